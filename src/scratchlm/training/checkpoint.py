"""Checkpoints and resume, the same for every trainer (pretraining, the fine-tunes, align).

A stage's checkpoint folder (`checkpoints/<stage>/`, persistent, never a DVC output) holds `last.ckpt`
and `fingerprint.json`. A checkpoint is resumed only when its fingerprint, a hash of the params, the
input files and the training code, matches the run about to start: DVC re-runs a stage when any of these
change, and resuming then would hand back weights trained on something else. Checkpoints are loaded with
`weights_only=True` and refused in one line when they hold anything else.

Pretraining saves every `ckpt_every` steps (its Trainer's own ModelCheckpoint) and on Ctrl-C; the
fine-tunes save after every epoch and on Ctrl-C during an epoch's training batches, and resume exactly
at epoch boundaries (their data orders are functions of seed and epoch).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from scratchlm.config.base import Section
from scratchlm.io import sha256_file
from scratchlm.launch import is_rank_zero

LAST = "last.ckpt"
FINGERPRINT = "fingerprint.json"
#: The code a checkpoint was trained with: the training package and the model.
CODE = [Path(__file__).parent, Path(__file__).parent.parent / "model"]
#: The modules outside those folders that the fine-tunes train with: prompts and their encoding, split
#: orders, sampled answers (preference pairs) and the validation metrics in the epoch history.
CODE_FILES = [Path(__file__).parent.parent / name for name in
              ("prompts.py", "evaluation/metrics.py", "evaluation/sampling.py", "evaluation/splits.py")]


def fingerprint(params: Section, files: Sequence[Path]) -> str:
    """What a checkpoint must match to be resumed: the params (and their type), the input files' bytes
    and the training code's."""
    parts = [type(params).__name__, json.dumps(params.model_dump(mode="json"), sort_keys=True)]
    parts += [sha256_file(path) for path in files]
    parts += [sha256_file(path) for folder in CODE for path in sorted(folder.glob("*.py"))]
    parts += [sha256_file(path) for path in CODE_FILES]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def resume_path(ckpt_dir: Path, expected: str) -> Path | None:
    """`last.ckpt` if it belongs to this exact run; otherwise (rank 0) clear the folder and start fresh."""
    marker = ckpt_dir / FINGERPRINT
    if (ckpt_dir / LAST).is_file() and marker.is_file() and json.loads(marker.read_text())["sha256"] == expected:
        check_resumable(ckpt_dir / LAST)
        return ckpt_dir / LAST
    if is_rank_zero():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"sha256": expected}) + "\n")
    return None


def check_resumable(path: Path) -> None:
    """Refuse, in one line, a checkpoint that is truncated or holds anything but tensors and plain data.

    Lightning would load it with `weights_only=True` too and refuse the same bytes, but with a long
    traceback that suggests `weights_only=False`: the one thing never to do with a file of unknown origin.
    """
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: refused to resume: not a weights-only checkpoint ({reason[:160]}); "
                         f"delete {path.parent} to train from scratch") from None


class CheckpointOnInterrupt(L.Callback):
    """Ctrl-C saves `last.ckpt` before Lightning exits, so the next run resumes from this step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path)


class SameStart(L.Callback):
    """Stop a multi-process run whose ranks resumed from different steps, before they train apart.

    Lightning loads `last.ckpt` on every rank, so the checkpoint folder must be one every node sees; a
    node with its own folder (a local disk) would start over while the others resume, and DDP would
    average gradients of different steps without a word.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size == 1:
            return
        step = torch.tensor([trainer.global_step], device=pl_module.device)
        steps = trainer.strategy.all_gather(step).flatten().tolist()
        if len(set(steps)) > 1:
            raise ValueError(f"the ranks start from different steps ({steps}): the checkpoint folder must be "
                             "the same for every node (a shared filesystem), as Lightning loads last.ckpt on each")


class EpochInterruptCheckpoint(CheckpointOnInterrupt):
    """Ctrl-C during an epoch's training batches saves `last.ckpt`; between epochs or in validation, nothing.

    A checkpoint taken after an epoch's last batch but before the next epoch's first one still carries
    the finished epoch's batch counter: Lightning would resume it by skipping the next epoch (or cut a
    validation short). There the finished epoch's `last.ckpt` is already the right state. A mid-epoch
    checkpoint keeps the progress, but Lightning restarts that epoch's batch order (it warns): resume
    is exact at epoch boundaries only.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.in_training_batches = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.in_training_batches = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_training_batches = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_training_batches = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.in_training_batches:
            super().on_exception(trainer, pl_module, exception)


def epoch_checkpoints(ckpt_dir: Path) -> tuple[ModelCheckpoint, EpochInterruptCheckpoint]:
    """`last.ckpt` after every epoch, and on Ctrl-C during training batches.

    It is ModelCheckpoint's top-1 with no monitor (the latest epoch) named `last`: `save_last` would not
    do, as Lightning writes it only when a top-k checkpoint was saved at the same step. Saved at the
    train epoch's end, after the epoch is validated and logged, so it holds the complete epoch; no
    version counter, so a resumed run overwrites the same file.
    """
    last = ModelCheckpoint(dirpath=ckpt_dir, filename=Path(LAST).stem, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    return last, EpochInterruptCheckpoint(ckpt_dir / LAST)


def best_checkpoint(ckpt_dir: Path, monitor: str) -> ModelCheckpoint:
    """The epoch with the highest `monitor` (first of equals); list it before `epoch_checkpoints`' so that
    `last.ckpt`, saved after it, records the best path, and a resumed run still knows the best epoch."""
    return ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor, mode="max", save_top_k=1, save_on_train_epoch_end=True,
                           enable_version_counter=False)


def fit_resuming(trainer: L.Trainer, module: L.LightningModule, loaders: dict[str, Any], ckpt_dir: Path,
                 expected: str) -> None:
    """Fit on the train and val loaders, resuming `last.ckpt` only if it carries the `expected` fingerprint."""
    trainer.fit(module, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"],
                ckpt_path=resume_path(ckpt_dir, expected), weights_only=True)
