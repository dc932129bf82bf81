"""Callbacks: throughput/MFU and loss logging, sample generations (checkpoints: `checkpoint.py`).

Metrics leave through a plain `log_fn(metrics, step)` so training never imports MLflow; the stage
passes the tracking module's logger. Host syncs (`.item()`) happen only every `log_every` steps.

Under data parallelism every rank runs these callbacks; rank 0 alone logs and generates. The train
loss logged is the mean over the ranks (each rank's loss covers only its share of the step's batch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

LogFn = Callable[[dict[str, float], int], None]


class TrainingLog(L.Callback):
    """Train loss, lr, grad norm, tokens/s and MFU every `log_every` steps; val metrics at each validation.

    Args:
        tokens_per_step: tokens one device consumes per optimizer step (scaled by the world size at start).
        flops_per_token: model FLOPs per trained token (forward + backward).
        peak_flops: the peak of one device MFU is measured against, in FLOP/s (scaled likewise); None: no
            MFU (the peak could not be measured).
        bytes_per_token: UTF-8 bytes per validation token, for bits per byte.
    """

    def __init__(self, log_fn: LogFn | None, log_every: int, tokens_per_step: int, flops_per_token: float,
                 peak_flops: float | None, bytes_per_token: float) -> None:
        self.log_fn, self.log_every = log_fn, log_every
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.peak_flops, self.bytes_per_token = peak_flops, bytes_per_token
        self.history: list[dict[str, float]] = []
        self.world_size = 1
        self._t0: float | None = None
        self._step0 = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.world_size = trainer.world_size  # known only once the strategy is set up

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        step = trainer.global_step
        if step == 0 or step % self.log_every or pl_module.last_loss is None or self._t0 is None:
            return
        if trainer.fit_loop._should_accumulate():
            return
        loss = trainer.strategy.reduce(pl_module.last_loss, reduce_op="mean")  # every rank reaches this step
        now = time.perf_counter()
        tokens_per_s = (step - self._step0) * self.tokens_per_step * self.world_size / max(now - self._t0, 1e-9)
        self._t0, self._step0 = now, step
        metrics = {
            "train_loss": float(loss),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "tokens_per_s": tokens_per_s,
        }
        if self.peak_flops:
            metrics["mfu"] = tokens_per_s * self.flops_per_token / (self.peak_flops * self.world_size)
        if pl_module.grad_norm is not None:
            metrics["grad_norm"] = float(pl_module.grad_norm)
        pl_module.log_dict({"loss": metrics["train_loss"], "tok/s": tokens_per_s}, prog_bar=True, logger=False)
        self._record(metrics, step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        self._t0, self._step0 = time.perf_counter(), trainer.global_step  # tokens/s counts training only
        loss = float(trainer.callback_metrics["val_loss"])
        self._record({"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)),
                      "val_bpb": loss / math.log(2) / self.bytes_per_token}, trainer.global_step)

    def _record(self, metrics: dict[str, float], step: int) -> None:
        self.history.append({"step": step, **metrics})
        if self.log_fn is not None and _is_rank_zero():
            self.log_fn(metrics, step)

    def state_dict(self) -> dict[str, Any]:
        """The history travels in the checkpoint, so a resumed run's loss curve starts at step 0."""
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))

    def loss_rows(self) -> list[dict[str, Any]]:
        """`step, train_loss, val_loss` rows for the DVC plot (one metric per row, blanks elsewhere)."""
        rows = []
        for entry in self.history:
            if "train_loss" in entry or "val_loss" in entry:
                rows.append({"step": entry["step"], "train_loss": entry.get("train_loss", ""),
                             "val_loss": entry.get("val_loss", "")})
        return rows


def _is_rank_zero() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class SampleText(L.Callback):
    """Generates from fixed prompts at every validation, seeded, so samples compare across steps."""

    def __init__(self, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
                 prompts: list[str], max_new_tokens: int, eos: int, seed: int = 0) -> None:
        self.encode, self.decode, self.prompts = encode, decode, prompts
        self.max_new_tokens, self.eos, self.seed = max_new_tokens, eos, seed
        self.samples: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples = list(state.get("samples", []))

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.max_new_tokens:
            return
        with pl_module.gathered():  # every rank: under FSDP, gathering the weights is a collective
            if _is_rank_zero():
                self.generate(trainer, pl_module)

    def generate(self, trainer: L.Trainer, pl_module: Any) -> None:
        model = pl_module.model
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        for prompt in self.prompts:
            idx = torch.tensor([self.encode(prompt)], device=pl_module.device)
            out = model.generate(idx, self.max_new_tokens, temperature=0.8, top_k=50, eos=self.eos,
                                 generator=generator)
            self.samples.append(f"[step {trainer.global_step}] {self.decode(out[0].tolist())}")
        model.train(was_training)
