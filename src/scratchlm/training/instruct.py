"""Instruction fine-tuning: Alpaca-style prompts, loss on the response only, generation scored by ROUGE-L.

Each example is `prompt + response + <|endoftext|>`; the labels are -100 over the prompt (and the
padding), so the model learns to answer, not to repeat questions, and learns to stop: the end token
closes every response. Batches group examples of similar length and pad only to the longest of
the batch. The skeleton is the pretraining LightningModule's.

The stage (`finetune_instruct`) deduplicates the set and drops records that share a 13-word n-gram with a
benchmark item, splits it by a hash of the ids (stored beside the model), fine-tunes, and scores greedy
answers to the validation prompts by ROUGE-L.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset, Sampler

from scratchlm.config.training import FinetuneInstructParams
from scratchlm.data.finetune_sets import clean_set
from scratchlm.evaluation.metrics import exact_match, rouge_l
from scratchlm.evaluation.sampling import generate_answers
from scratchlm.evaluation.splits import id_hash
from scratchlm.io import DataFormatError, read_set, write_jsonl
from scratchlm.model.gpt import GPT, save_model
from scratchlm.prompts import IGNORE, collate, encode_example, format_prompt
from scratchlm.tokenizer import EOT, PAD
from scratchlm.training.callbacks import LogFn
from scratchlm.training.checkpoint import epoch_checkpoints, fit_resuming
from scratchlm.training.data import own_generator
from scratchlm.training.finetune import EpochLog, finetune_fingerprint, prepare, trainer_for
from scratchlm.training.module import GPTModule


def check_records(records: Sequence[dict[str, Any]], source: str) -> None:
    for index, record in enumerate(records, start=1):
        for field in ("instruction", "output"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise DataFormatError(f"{source}: record {index} ({record.get('id')}): missing or empty '{field}'")


def split_by_hash(records: Sequence[dict[str, Any]], ratios: dict[str, float], seed: int
                  ) -> dict[str, list[dict[str, Any]]]:
    """Seeded, order-independent split: each record's bucket is a hash of (seed, id)."""
    bounds, total = [], 0.0
    for name, ratio in ratios.items():
        total += ratio
        bounds.append((total, name))
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in ratios}
    for record in sorted(records, key=lambda r: r["id"]):
        digest = hashlib.sha256(f"{seed}:{record['id']}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        parts[next((name for bound, name in bounds if u < bound), bounds[-1][1])].append(record)
    return parts


class InstructDataset(Dataset):
    def __init__(self, examples: list[tuple[list[int], list[int]]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.examples[i]


class LengthBatches(Sampler[list[int]]):
    """Batches of similar length (sorted within windows of 50 batches), in a seeded order per epoch.

    The order is a function of (seed, epoch) alone, set by `set_epoch`, so a run resumed at an epoch
    boundary draws the same batches as one that never stopped (a counter of calls would restart at 0).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.shuffle = list(lengths), batch_size, seed, shuffle
        self.epoch = 0

    @property
    def sampler(self) -> LengthBatches:
        """Lightning calls `set_epoch` on `loader.sampler` and `loader.batch_sampler.sampler`, never on the
        batch sampler itself (`lightning.fabric.utilities.data._set_sampler_epoch`): this batch sampler
        draws its own indices, so it is that sampler."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch (the epoch count is restored on resume)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        """A generator, so the order is drawn at the first batch, not when the iterator is made: a resumed
        Lightning run makes it before calling `set_epoch` (torch's BatchSampler is lazy the same way)."""
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        window = self.batch_size * 50
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class InstructModule(GPTModule):
    """Next-token loss where labels are not IGNORE (the response and its end token); logs train loss."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.checked(self.compute_loss(batch))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].size(0))
        return loss


# ------------------------------------------------------------------------------------ the stage


def instruction_text(record: dict[str, Any]) -> str:
    """What a record says (its duplicate key, and what decontamination looks in)."""
    return f"{record['instruction']} {record.get('input', '')} {record['output']}"


def instruct_examples(params: FinetuneInstructParams, splits: dict[str, list[dict[str, Any]]], tokenizer: Tokenizer
                      ) -> tuple[dict[str, list[str]], dict[str, list[tuple[list[int], list[int]]]], dict[str, int]]:
    """Prompts, (ids, labels) examples and the count dropped per split for having no room for a response."""
    eot = tokenizer.token_to_id(EOT)
    prompts = {s: [format_prompt(params.prompt_template, params.input_template, r["instruction"], r["input"])
                   for r in rs] for s, rs in splits.items()}
    examples = {s: [encode_example(p, r["output"], lambda t: tokenizer.encode(t).ids, eot, params.max_length)
                    for p, r in zip(prompts[s], splits[s], strict=True)] for s in splits}
    # an example whose prompt fills max_length has no response token left to learn from
    too_long = {s: sum(1 for _, y in ex if all(t == IGNORE for t in y)) for s, ex in examples.items()}
    examples = {s: [(x, y) for x, y in ex if any(t != IGNORE for t in y)] for s, ex in examples.items()}
    if not examples["train"] or not examples["val"]:
        raise DataFormatError(f"no train or val example fits in max_length {params.max_length} tokens")
    return prompts, examples, too_long


def instruct_loaders(examples: dict[str, list[tuple[list[int], list[int]]]], batch_size: int, seed: int,
                     pad: int) -> dict[str, DataLoader]:
    """Length-grouped batches; the train order is a function of (seed, epoch) (`LengthBatches.set_epoch`)."""
    return {s: DataLoader(InstructDataset(examples[s]), num_workers=0, collate_fn=lambda b: collate(b, pad),
                          generator=own_generator(seed),
                          batch_sampler=LengthBatches([len(x) for x, _ in examples[s]], batch_size, seed,
                                                      shuffle=s == "train"))
            for s in ("train", "val")}


def export_instruct(body: GPT, tokenizer: Tokenizer, params: FinetuneInstructParams, items: list[dict[str, Any]],
                    answers: list[str], out_dir: Path) -> None:
    """Weights, tokenizer, the prompt template, and the first 20 scored validation answers."""
    write_jsonl(out_dir / "samples.jsonl", ({"instruction": r["instruction"], "input": r["input"],
                                             "reference": r["output"], "generated": a}
                                            for r, a in list(zip(items, answers, strict=True))[:20]))
    save_model(body, out_dir)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "template.json").write_text(json.dumps({"prompt_template": params.prompt_template,
                                                       "input_template": params.input_template}, indent=2) + "\n")


def finetune_instruct(data_files: list[Path], pretrain_dir: Path, out_dir: Path, ckpt_dir: Path,
                      params: FinetuneInstructParams, log_fn: LogFn | None = None,
                      callbacks: list[L.Callback] | None = None, benchmark_dir: Path | None = None) -> dict[str, Any]:
    """Fine-tune on prompt → response pairs, loss on responses only; score val answers by ROUGE-L.

    The set is deduplicated and decontaminated against the benchmarks under `benchmark_dir` first.
    `ckpt_dir` holds `last.ckpt` across runs (resumed when the fingerprint matches); `callbacks` are
    added to the Trainer's own (fault injection in tests).
    """
    records = read_set(data_files)
    check_records(records, ", ".join(str(path) for path in data_files))
    records, cleaning = clean_set(records, instruction_text, benchmark_dir, params.decontaminate_ngram)
    splits = split_by_hash(records, params.split, params.seed)
    tokenizer, body = prepare("finetune_instruct", params, splits, pretrain_dir, out_dir)
    prompts, examples, too_long = instruct_examples(params, splits, tokenizer)
    data = instruct_loaders(examples, params.batch_size, params.seed, tokenizer.token_to_id(PAD))
    module = InstructModule(body.config, params, params.epochs * len(data["train"]), model=body)
    epochs = EpochLog(log_fn)
    trainer = trainer_for(params, [epochs, *epoch_checkpoints(ckpt_dir), *(callbacks or [])])
    fit_resuming(trainer, module, data, ckpt_dir, finetune_fingerprint(params, data_files, pretrain_dir))
    # the first eval_items in a seeded order of ids: a sample across the set's sources
    val = splits["val"]
    picked = sorted(range(len(val)), key=lambda i: id_hash(val[i], params.seed))[: params.eval_items]
    items = [val[i] for i in picked]
    answers = generate_answers(body, tokenizer, [prompts["val"][i] for i in picked], params.max_new_tokens)
    references = [r["output"] for r in items]
    export_instruct(body, tokenizer, params, items, answers, out_dir)
    last = epochs.history[-1] if epochs.history else {}
    return {"train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
            "dropped_too_long": too_long, "cleaning": cleaning,
            "rouge_l": rouge_l(references, answers), "exact_match": exact_match(references, answers),
            "eval_items": len(items), "split_sizes": {k: len(v) for k, v in splits.items()}}
