"""Alignment by direct preference optimisation (DPO, Rafailov et al. 2023), with the instruction model as
the frozen reference.

For a prompt x and a pair (chosen y+, rejected y-), the policy's implicit reward of an answer is
β · (log π(y|x) − log π_ref(y|x)), summed over the answer's tokens (the prompt is context only, as in
instruction tuning). DPO maximises log σ(reward(y+) − reward(y-)): the policy moves towards the chosen
answers and away from the rejected ones, β bounding how far it strays from the reference. The chosen
answers' next-token loss is added with weight `nll_weight` (RPO, Pang et al. 2024): without it, DPO can
make both answers less likely as long as the rejected one falls faster, which shows as worse greedy
answers. The reference's log-probabilities are computed once, before training, in the training precision.

The stage (`align`): pairs (see `preference.py`) → reference log-probabilities → fit (epochs, exact
resume at epoch boundaries, like the other fine-tunes) → held-out preference accuracy, reward margin and
KL from the reference → export, with the instruction model's template and split, so evaluate and `chat`
use the aligned model exactly as the instruction model.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from scratchlm.config.training import AlignParams, OptimParams
from scratchlm.evaluation.sampling import generate_answers
from scratchlm.evaluation.splits import stored_splits
from scratchlm.io import DataFormatError, write_jsonl
from scratchlm.model.gpt import GPT, load_model, save_model
from scratchlm.prompts import IGNORE, collate, encode_example
from scratchlm.tokenizer import EOT, PAD
from scratchlm.training.callbacks import LogFn
from scratchlm.training.checkpoint import epoch_checkpoints, fit_resuming
from scratchlm.training.data import own_generator
from scratchlm.training.finetune import EpochLog, finetune_fingerprint, prepare, trainer_for
from scratchlm.training.instruct import InstructDataset, LengthBatches
from scratchlm.training.module import GPTModule
from scratchlm.training.preference import Record, built_pairs, capped, source_pairs

#: One pair, encoded: chosen (ids, labels), rejected (ids, labels), the reference's log-probabilities of both.
Example = tuple[list[int], list[int], list[int], list[int], float, float]


def response_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's summed log-probability of its target tokens (those that are not IGNORE)."""
    mask = targets != IGNORE
    picked = torch.gather(logits.float().log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def collate_pairs(batch: Sequence[Example], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, targets, reference log-probs): the chosen answers' rows first, then the rejected ones', padded
    to the longest of both."""
    ids, targets = collate([(c, cl) for c, cl, *_ in batch] + [(r, rl) for _, _, r, rl, *_ in batch], pad)
    reference = torch.tensor([ex[4] for ex in batch] + [ex[5] for ex in batch], dtype=torch.float32)
    return ids, targets, reference


def dpo_terms(logps: torch.Tensor, reference: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(DPO loss per pair, reward margin per pair) from the stacked chosen-then-rejected log-probabilities."""
    rewards = beta * (logps - reference)
    n = logps.size(0) // 2
    margin = rewards[:n] - rewards[n:]
    return -F.logsigmoid(margin), margin


def autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """The training precision's autocast on CPU, so the reference's log-probabilities match the policy's at
    step 0 (margin 0) instead of differing by bf16 rounding."""
    if precision.startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def reference_logps(model: GPT, examples: Sequence[tuple[list[int], list[int]]], pad: int, batch_size: int,
                    precision: str) -> list[float]:
    """The frozen reference's summed response log-probability of each (ids, labels) example."""
    model.eval()
    out: list[float] = []
    with autocast(precision):
        for start in range(0, len(examples), batch_size):
            ids, targets = collate(list(examples[start : start + batch_size]), pad)
            out += response_logps(model(ids)[0], targets).tolist()
    return out


class AlignModule(GPTModule):
    """DPO + `nll_weight` × the chosen answers' next-token loss; logs loss, preference accuracy and margin."""

    def __init__(self, model: GPT, optim: OptimParams, total_steps: int, beta: float, nll_weight: float) -> None:
        super().__init__(model.config, optim, total_steps, model=model)
        self.beta, self.nll_weight = beta, nll_weight

    def pair_step(self, batch: Any, split: str) -> torch.Tensor:
        ids, targets, reference = batch
        logits = self._forward(ids)[0]
        losses, margin = dpo_terms(response_logps(logits, targets), reference, self.beta)
        n = ids.size(0) // 2
        nll = F.cross_entropy(logits[:n].float().flatten(0, 1), targets[:n].flatten(), ignore_index=IGNORE)
        loss = losses.mean() + self.nll_weight * nll
        self.log_dict({f"{split}_loss": loss, f"{split}_accuracy": (margin > 0).float().mean(),
                       f"{split}_margin": margin.mean()}, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.checked(self.pair_step(batch, "train"))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.pair_step(batch, "val")


def encode_pairs(pairs: Sequence[Record], tokenizer: Tokenizer, reference: GPT, params: AlignParams
                 ) -> tuple[list[Example], int]:
    """Each pair's two (ids, labels) examples, with the reference's log-probabilities of both answers; and the
    count of pairs dropped because a prompt fills `max_length` and leaves one of the answers no token."""
    encode, eot, pad = (lambda t: tokenizer.encode(t).ids), tokenizer.token_to_id(EOT), tokenizer.token_to_id(PAD)
    encoded = [(encode_example(p["prompt"], p["chosen"], encode, eot, params.max_length),
                encode_example(p["prompt"], p["rejected"], encode, eot, params.max_length)) for p in pairs]
    kept = [(c, r) for c, r in encoded if any(t != IGNORE for t in c[1]) and any(t != IGNORE for t in r[1])]
    ref = reference_logps(reference, [c for c, _ in kept] + [r for _, r in kept], pad, params.batch_size * 2,
                          params.precision)
    return [(*c, *r, ref[i], ref[len(kept) + i]) for i, (c, r) in enumerate(kept)], len(pairs) - len(kept)


def pair_loaders(examples: dict[str, list[Example]], batch_size: int, seed: int, pad: int) -> dict[str, DataLoader]:
    """Pairs batched by length; the train order is a function of (seed, epoch) (`LengthBatches.set_epoch`)."""
    return {split: DataLoader(InstructDataset(examples[name]), num_workers=0, generator=own_generator(seed),
                              collate_fn=lambda b: collate_pairs(b, pad),
                              batch_sampler=LengthBatches([len(ex[0]) + len(ex[2]) for ex in examples[name]],
                                                          batch_size, seed, shuffle=split == "train"))
            for split, name in (("train", "train"), ("val", "heldout"))}


@torch.no_grad()
def heldout_scores(policy: GPT, reference: GPT, loader: DataLoader, beta: float, precision: str) -> dict[str, float]:
    """Preference accuracy (the chosen answer's reward is higher), mean reward margin, the reference's own
    accuracy by likelihood, and the mean per-token KL(policy ‖ reference) over the answers' tokens."""
    policy.eval()
    margins, ref_right, kl_sum, tokens = [], [], 0.0, 0
    with autocast(precision):
        for ids, targets, ref in loader:
            logits, ref_logits = policy(ids)[0].float(), reference(ids)[0].float()
            margins.append(dpo_terms(response_logps(logits, targets), ref, beta)[1])
            n = ids.size(0) // 2
            ref_right.append(ref[:n] > ref[n:])
            mask = targets != IGNORE
            log_p, log_q = logits.log_softmax(-1), ref_logits.log_softmax(-1)
            kl_sum += float(((log_p.exp() * (log_p - log_q)).sum(-1) * mask).sum())
            tokens += int(mask.sum())
    margin = torch.cat(margins)
    return {"preference_accuracy": float((margin > 0).float().mean()), "reward_margin": float(margin.mean()),
            "reference_accuracy": float(torch.cat(ref_right).float().mean()), "kl_per_token": kl_sum / max(1, tokens),
            "pairs": len(margin)}


def side_by_side(pairs: Sequence[Record], reference: GPT, policy: GPT, tokenizer: Tokenizer, max_new_tokens: int
                 ) -> Iterator[Record]:
    """Greedy answers of both models to held-out prompts (the card's samples)."""
    prompts = [p["prompt"] for p in pairs]
    before = generate_answers(reference, tokenizer, prompts, max_new_tokens)
    after = generate_answers(policy, tokenizer, prompts, max_new_tokens)
    for pair, old, new in zip(pairs, before, after, strict=True):
        yield {"instruction": pair["instruction"], "input": pair["input"], "reference": pair["chosen"],
               "instruct": old, "aligned": new}


def align(instruction_files: list[Path], preference_files: list[Path], instruct_dir: Path, out_dir: Path,
          ckpt_dir: Path, params: AlignParams, log_fn: LogFn | None = None,
          callbacks: list[L.Callback] | None = None, benchmark_dir: Path | None = None) -> dict[str, Any]:
    """Pairs → DPO from the instruction model → held-out scores → `out_dir`; returns the metrics.

    `ckpt_dir` holds `last.ckpt` across runs (resumed when the fingerprint matches); `callbacks` are added
    to the Trainer's own (fault injection in tests).
    """
    splits = stored_splits(instruction_files, instruct_dir)
    template = json.loads((instruct_dir / "template.json").read_text(encoding="utf-8"))
    tokenizer, policy = prepare("align", params, splits, instruct_dir, out_dir)
    reference = load_model(instruct_dir).requires_grad_(False).eval()
    raw = (source_pairs(preference_files, template, params) if preference_files
           else built_pairs(splits, reference, tokenizer, template, params))
    pairs, cleaning = capped(raw, benchmark_dir, params)
    write_jsonl(out_dir / "pairs.jsonl", ({key: p[key] for key in ("id", "split", "instruction", "input", "chosen",
                                                                    "rejected")} for s in pairs.values() for p in s))
    encoded = {split: encode_pairs(pairs[split], tokenizer, reference, params) for split in pairs}
    examples = {split: found for split, (found, _) in encoded.items()}
    if not examples["train"] or not examples["heldout"]:
        raise DataFormatError(f"no training or held-out pair fits in max_length {params.max_length} tokens")
    data = pair_loaders(examples, params.batch_size, params.seed, tokenizer.token_to_id(PAD))
    module = AlignModule(policy, params, params.epochs * len(data["train"]), params.beta, params.nll_weight)
    epochs = EpochLog(log_fn)
    trainer = trainer_for(params, [epochs, *epoch_checkpoints(ckpt_dir), *(callbacks or [])])
    fit_resuming(trainer, module, data, ckpt_dir,
                 finetune_fingerprint(params, [*instruction_files, *preference_files], instruct_dir))
    scores = heldout_scores(policy, reference, data["val"], params.beta, params.precision)
    write_jsonl(out_dir / "samples.jsonl", side_by_side(pairs["heldout"][:10], reference, policy, tokenizer,
                                                        params.max_new_tokens))
    save_model(policy, out_dir)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    shutil.copy2(instruct_dir / "template.json", out_dir / "template.json")
    last = epochs.history[-1] if epochs.history else {}
    return {"heldout": scores, "train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy"),
            "pairs": {split: len(found) for split, found in examples.items()}, "cleaning": cleaning,
            "dropped_too_long": {split: dropped for split, (_, dropped) in encoded.items()},
            "pair_source": "preference sources" if preference_files else "built from the instruction set",
            "epochs": epochs.history}
