"""What every fine-tune of a trained GPT shares: setup, the Trainer, the epoch log, greedy answers.

The classifier (`classifier.py`), the instruction model (`instruct.py`) and the aligned model
(`align.py`) each hold their stage beside their LightningModule; they start the same way (threads, seed,
the split stored beside the model, the tokenizer and the model they start from), train under the same
Trainer (epochs, precision and clipping from their `FinetuneParams`) and checkpoint and resume the same
way (`checkpoint.py`): `last.ckpt` after every epoch and on Ctrl-C, resumed only when its fingerprint
(params, data, starting model, training code) matches. Data orders are functions of (seed, epoch), so a
run resumed at an epoch boundary ends with the same weights and metrics as one that never stopped.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer

from scratchlm.config import FinetuneParams
from scratchlm.io import DataFormatError, read_jsonl, read_set, write_jsonl
from scratchlm.model.gpt import GPT, load_model
from scratchlm.tokenizer import EOT, load_tokenizer
from scratchlm.training.callbacks import LogFn
from scratchlm.training.checkpoint import fingerprint
from scratchlm.training.module import effective_precision

#: The files of the model a fine-tune starts from that its checkpoints must match.
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json")


def finetune_fingerprint(params: FinetuneParams, data_files: Sequence[Path], model_dir: Path) -> str:
    """What a fine-tune checkpoint must match: params, data, the model it starts from, the training code.

    The starting model counts because a new pretraining (or instruction model) re-runs the stage:
    resuming would continue from the old body.
    """
    return fingerprint(params, [*data_files, *(model_dir / name for name in MODEL_FILES)])


class EpochLog(L.Callback):
    """Train and validation loss/accuracy/precision/recall/F1 after each epoch, through `log_fn`.

    The history travels in the checkpoint (saved after this hook), so a resumed run reports every epoch.
    """

    def __init__(self, log_fn: LogFn | None) -> None:
        self.log_fn, self.history = log_fn, []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train_", "val_"))}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        if self.log_fn is not None:
            self.log_fn(metrics, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def prepare(stage: str, params: FinetuneParams, splits: dict[str, list[dict[str, Any]]], model_dir: Path,
            out_dir: Path) -> tuple[Tokenizer, GPT]:
    """Threads and seeds, the split stored beside the model, the tokenizer and the model to start from."""
    torch.set_num_threads(params.num_threads or os.cpu_count() or 1)
    L.seed_everything(params.seed, workers=True, verbose=False)
    write_jsonl(out_dir / "split.jsonl", ({"id": r["id"], "split": s} for s, rs in splits.items() for r in rs))
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    body = load_model(model_dir)
    if params.max_length > body.config.block_size:
        raise DataFormatError(f"{stage}.max_length {params.max_length} exceeds the model's "
                              f"block_size {body.config.block_size}")
    return tokenizer, body


def trainer_for(params: FinetuneParams, callbacks: list[L.Callback], **overrides: Any) -> L.Trainer:
    """The fine-tunes' Trainer: epochs, precision and clipping from params, metrics through callbacks."""
    return L.Trainer(accelerator=params.accelerator, devices=1,
                     precision=effective_precision(params.precision, params.accelerator),
                     max_epochs=params.epochs, gradient_clip_val=params.grad_clip or None, logger=False,
                     num_sanity_val_steps=0, callbacks=callbacks, enable_model_summary=False, **overrides)


def generate_answers(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int,
                     temperature: float = 0.0, top_k: int | None = None, generator: torch.Generator | None = None,
                     batch_size: int = 32) -> list[str]:
    """Answers, each stopped by the end token (the model learned to emit it): greedy by default, sampled
    with a temperature (and the seeded `generator`, so the same seed gives the same answers).

    Prompts of the same token length are answered together, up to `batch_size` at a time (the model has no
    padding mask, so a batch is only ever prompts of one length): the same answers, several times faster.
    """
    eot = tokenizer.token_to_id(EOT)
    model.eval()
    limit = model.config.block_size - max_new_tokens
    encoded = [tokenizer.encode(prompt).ids[-max(1, limit):] for prompt in prompts]
    answers = [""] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    for length, same in itertools.groupby(order, key=lambda i: len(encoded[i])):
        rows = list(same)
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            out = model.generate(torch.tensor([encoded[i] for i in batch]), max_new_tokens, temperature=temperature,
                                 top_k=top_k, eos=eot, generator=generator)[:, length:].tolist()
            for row, ids in zip(batch, out, strict=True):
                answers[row] = tokenizer.decode(ids[: ids.index(eot)] if eot in ids else ids).strip()
    return answers


def id_hash(record: dict[str, Any], seed: int) -> str:
    """A record's place in a seeded order that depends on its id alone."""
    return hashlib.sha256(f"{seed}:{record['id']}".encode()).hexdigest()


def hash_order(records: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The records in the seeded order of their ids' hashes: the first n of it are a sample across the set's
    sources, where the first n by id would all be the first source's."""
    return sorted(records, key=lambda r: id_hash(r, seed))


def stored_splits(data_files: list[Path], model_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The set's records grouped by the split the fine-tune stored; a missing record is an error."""
    assigned = {row["id"]: row["split"] for row in read_jsonl(model_dir / "split.jsonl")}
    splits: dict[str, list[dict[str, Any]]] = {}
    for record in read_set(data_files):
        if record.get("id") in assigned:
            splits.setdefault(assigned.pop(record["id"]), []).append(record)
    if assigned:
        shown = ", ".join(str(path) for path in data_files)
        raise DataFormatError(f"{shown}: record {next(iter(assigned))} of {model_dir / 'split.jsonl'} is missing "
                              "(the data changed since fine-tuning)")
    if not splits.get("test"):
        raise DataFormatError(f"{model_dir / 'split.jsonl'}: no test records")
    return splits
