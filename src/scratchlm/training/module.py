"""The LightningModule skeleton shared by pretraining and fine-tuning.

It owns what every stage trains the same way: the optimizer of `OptimParams` (AdamW, or Muon for the
blocks' matrices; decay on matrices only, fused where the device allows it), linear warmup + cosine decay
to `min_lr`, a stop on the first non-finite loss,
and the RNG state in checkpoints so a resumed run draws the same dropout masks. Subclasses
implement `compute_loss(batch)`; pretraining is the plain language-modelling loss.

Under FSDP (`strategy: fsdp`) each rank holds a flat shard of every weight, so three things that read
whole weights go through the strategy: the optimizer is built before the model is wrapped (its groups
read parameter shapes, and FSDP keeps the same parameter objects as views of its shards), clipping uses
the wrapper's global norm, and whatever needs the whole model (export, samples) runs inside `gathered()`.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from scratchlm.config.training import OptimParams
from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.training.optim import build_optimizer

if TYPE_CHECKING:
    from torch.distributed.fsdp import FullyShardedDataParallel


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them oneDNN emulates bf16 matmuls, ~100x slower than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def effective_precision(precision: str, accelerator: str) -> str:
    """The Trainer precision to use: bf16 falls back to fp32 on a CPU run whose CPU lacks native bf16.

    Measured on a 2-core AVX2-only EPYC: bf16 matmuls at 0.2 GFLOP/s against 78 for fp32, so a
    bf16 default that is 1.8x faster on AVX512-BF16 CPUs would make training hours long there.
    """
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not cpu_has_native_bf16():
        warnings.warn(f"precision {precision}: this CPU has no native bf16 (AVX512-BF16/AMX), which would be "
                      "emulated ~100x slower; training in 32-true instead", stacklevel=2)
        return "32-true"
    return precision


PRECISION_DTYPES = {"32-true": torch.float32, "32": torch.float32, "bf16-mixed": torch.bfloat16,
                    "bf16-true": torch.bfloat16, "16-mixed": torch.float16, "16-true": torch.float16}


def matmul_tflops(dtype: torch.dtype, device: str = "cpu", n: int = 1024, seconds: float = 1.0) -> float:
    """Measured dense n×n matmul throughput of this device and dtype (all torch threads).

    The MFU reference when `peak_tflops` is not set: a spec-sheet peak means nothing for a CPU
    whose matmul speed depends on its vector units, cores and whether bf16 is native.
    """
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 8 == 0:
            synchronize()
    synchronize()
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e12


#: The share of its cores a CPU peak probe must have had for its figure to count. Less, and other processes ran
#: on them: the probe measured a fraction of the peak, and MFU against it came out too high (a run on busy
#: cores once recorded 153%).
PROBE_SHARE_NEEDED = 0.9


def cpu_probe(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0, tries: int = 3) -> tuple[float, float]:
    """(TFLOP/s, share of its cores) of a CPU matmul probe: up to `tries` of them, the first that had its cores
    to itself (CPU time ≥ `PROBE_SHARE_NEEDED` × wall time × threads), else the one that had the most."""
    from scratchlm.launch import usable_cpus

    cores = max(1, min(torch.get_num_threads(), usable_cpus()))
    best = (0.0, -1.0)
    for _ in range(tries):
        wall, cpu = time.perf_counter(), time.process_time()
        tflops = matmul_tflops(dtype, "cpu", n, seconds)
        share = (time.process_time() - cpu) / ((time.perf_counter() - wall) * cores)
        if share >= PROBE_SHARE_NEEDED:
            return tflops, share
        best = max(best, (tflops, share), key=lambda probe: probe[1])
    return best


def peak_tflops(configured: float | None, precision: str, accelerator: str, local_rank: int = 0
                ) -> tuple[float | None, str]:
    """(peak, where it came from): the configured peak ("params"); else a 1-second probe in the training dtype
    ("measured"); or None and why, where no CPU probe had its cores to itself: MFU is then not recorded,
    rather than recorded too high.

    The peak is one device's: on a GPU node each rank probes its own GPU (`local_rank`, before Lightning
    has set the current device, so every rank would otherwise probe GPU 0 at once), and MFU divides by the
    world size. CPU processes that probe on the same cores at once (two ranks on one machine) see each
    other as busy cores.
    """
    if configured is not None:
        return configured, "params"
    dtype = PRECISION_DTYPES.get(precision, torch.float32)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return matmul_tflops(dtype, f"cuda:{local_rank % max(1, torch.cuda.device_count())}", 8192), "measured"
    tflops, share = cpu_probe(dtype)
    if share < PROBE_SHARE_NEEDED:
        return None, f"not measured: the peak probe had {share:.0%} of its cores (other processes were running)"
    return tflops, "measured"


def fsdp_root(trainer: L.Trainer | None) -> FullyShardedDataParallel | None:
    """The FSDP wrapper around the LightningModule once the strategy has set it up, else None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = trainer.strategy.model if trainer is not None else None
    return model if isinstance(model, FullyShardedDataParallel) else None


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stops with the step number."""


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at `total` steps (flat afterwards)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


class GPTModule(L.LightningModule):
    """A GPT under Lightning, optimised as `optim` says over `total_steps` optimizer steps (the schedule's end).

    Every trainer hands it the same typed contract (`OptimParams`, which each stage's section extends);
    what a subclass needs beyond it (labels, β, a reference model) it takes as its own typed arguments.
    """

    def __init__(self, config: GPTConfig, optim: OptimParams, total_steps: int, model: GPT | None = None) -> None:
        super().__init__()
        self.config, self.optim, self.total_steps = config, optim, total_steps
        self.model = model if model is not None else GPT(config)
        self.last_loss: torch.Tensor | None = None
        self.grad_norm: torch.Tensor | None = None
        self._prebuilt: dict[str, Any] | None = None
        # The compiled forward is kept outside the module tree (no duplicate state_dict keys); the
        # plain module stays for generation, whose changing shapes would only trigger recompiles.
        object.__setattr__(self, "_forward", torch.compile(self.model) if optim.compile else self.model)

    def compute_loss(self, batch: Any) -> torch.Tensor:
        inputs, targets = batch
        return self._forward(inputs, targets)[1]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.checked(self.compute_loss(batch))

    def checked(self, loss: torch.Tensor) -> torch.Tensor:
        """Stop on the first non-finite loss, naming the step; keep the loss for logging."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {self.global_step}: stopping; "
                                     "the last checkpoint is the last good state")
        self.last_loss = loss.detach()
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = self.compute_loss(batch)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=batch[0].size(0))

    def trained_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer owns (a fine-tune adds its head)."""
        return self.model

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by global norm ourselves: Lightning refuses to with a fused optimizer, though with bf16
        or fp32 there is no loss scaler to unscale first. The norm is kept for logging (no sync).

        Under DDP the gradients are already averaged over the ranks, so every rank clips alike; under
        FSDP each rank holds a shard of them, and the wrapper's `clip_grad_norm_` reduces the norm."""
        if not gradient_clip_val:
            return
        root = fsdp_root(self._trainer)
        if root is not None:
            self.grad_norm = root.clip_grad_norm_(gradient_clip_val)
        else:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """The whole model on rank 0 for the block (every rank must enter: under FSDP it is a collective).

        Without FSDP every rank already holds the whole model and this does nothing."""
        root = fsdp_root(self._trainer)
        if root is None:
            yield
            return
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(root, writeback=False, rank0_only=True):
            yield

    def setup(self, stage: str) -> None:
        """Under FSDP, build the optimizer now, before the strategy wraps the model: its groups read the
        parameters' shapes (decay on matrices only), which FSDP's flat shards no longer have; with
        `use_orig_params` (Lightning's default) the parameter objects stay the same, as views of the shards."""
        from lightning.pytorch.strategies import FSDPStrategy

        if stage == "fit" and self._trainer is not None and isinstance(self._trainer.strategy, FSDPStrategy):
            self._prebuilt = self.build_optimizers()

    def configure_optimizers(self) -> dict[str, Any]:
        built, self._prebuilt = self._prebuilt, None
        return built or self.build_optimizers()

    def build_optimizers(self) -> dict[str, Any]:
        """The optimizer of `optim` and its warmup + cosine schedule, in Lightning's form."""
        optim = self.optim
        # fp16 needs a loss scaler, which cannot unscale a fused optimizer's gradients before clipping
        fused = optim.fused_adamw and self.device.type in ("cpu", "cuda") and optim.precision != "16-mixed"
        optimizer = build_optimizer(self.trained_module(), optim.optimizer, optim.lr, optim.weight_decay,
                                    (optim.beta1, optim.beta2), fused)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(
            step, lr=1.0, min_lr=optim.min_lr / optim.lr, warmup=optim.warmup_steps, total=self.total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
