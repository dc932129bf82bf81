"""What every fine-tune of a trained GPT shares: setup, the Trainer, the epoch log.

The classifier (`classifier.py`), the instruction model (`instruct.py`) and the aligned model
(`align.py`) each hold their stage beside their LightningModule; they start the same way (threads, seed,
the split stored beside the model, the tokenizer and the model they start from), train under the same
Trainer (epochs, precision and clipping from their `FinetuneParams`) and checkpoint and resume the same
way (`checkpoint.py`): `last.ckpt` after every epoch and on Ctrl-C, resumed only when its fingerprint
(params, data, starting model, training code) matches. Data orders are functions of (seed, epoch), so a
run resumed at an epoch boundary ends with the same weights and metrics as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer

from scratchlm.config.training import FinetuneParams
from scratchlm.io import DataFormatError, write_jsonl
from scratchlm.launch import usable_cpus
from scratchlm.model.gpt import GPT, load_model
from scratchlm.tokenizer import load_tokenizer
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
    torch.set_num_threads(params.num_threads or usable_cpus())
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
