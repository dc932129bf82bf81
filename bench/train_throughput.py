"""Tokens/s and MFU of the default profile's model: a plain PyTorch loop vs our Lightning loop.

Same model, batch, optimizer (fused AdamW) and data in each pair, measured in one run so the ratios
hold on a noisy machine. Precisions are the ones this machine runs natively: bf16 is skipped (and its
target marked as not applicable) on a CPU without AVX512-BF16/AMX, where the pretrain stage itself
falls back to fp32. MFU is against this machine's measured matmul peak in the same precision.
Targets (issue #8): Lightning ≥ 0.95× plain; the default setting ≥ 2.0× eager fp32; MFU ≥ 55% of the
measured peak; progress bar + logging ≤ 3% of step time, timed inside their per-step hooks (an A/B of
whole runs cannot resolve a few percent here: run-to-run noise is ±10%). Writes reports/bench/train_throughput.json.
Usage: python bench/train_throughput.py [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from _bench import Figure, default_pretrain, exclusive_peak_tflops, report
from torch.utils.data import DataLoader, IterableDataset

from scratchlm.config.training import PretrainParams
from scratchlm.launch import usable_cpus
from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.training.callbacks import TrainingLog
from scratchlm.training.module import PRECISION_DTYPES, GPTModule, effective_precision
from scratchlm.training.optim import build_optimizer


class RandomTokens(IterableDataset):
    def __init__(self, vocab: int, block: int) -> None:
        self.vocab, self.block = vocab, block

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        while True:
            tokens = torch.randint(0, self.vocab, (self.block + 1,), generator=generator)
            yield tokens[:-1], tokens[1:]


def plain_loop(config: GPTConfig, hp: PretrainParams, bf16: bool, compile_: bool, steps: int, warmup: int) -> float:
    """nanoGPT-style loop; returns the median seconds per optimizer step after warmup."""
    torch.manual_seed(0)
    model = GPT(config)
    forward = torch.compile(model) if compile_ else model
    optimizer = build_optimizer(model, "adamw", hp.lr, hp.weight_decay, (hp.beta1, hp.beta2), fused=True)
    batches = iter(DataLoader(RandomTokens(config.vocab_size, config.block_size), batch_size=hp.batch_size))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        x, y = next(batches)
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


class StepTimer(L.Callback):
    """Seconds from one batch start to the next, so every hook and callback of a step is inside; the
    median over steps ignores a neighbour's burst on a shared machine, which a mean over a few does not."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, *args) -> None:
        self.starts.append(time.perf_counter())

    def step_times(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.starts)]


class HookClock:
    """Wall time spent inside given callbacks' per-step hooks: the direct cost of the progress bar and
    TrainingLog, which an A/B of whole runs cannot resolve here (run-to-run noise is ±10%)."""

    HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_optimizer_step")

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, callback: L.Callback) -> None:
        for name in self.HOOKS:
            setattr(callback, name, self._timed(getattr(callback, name)))

    def _timed(self, hook):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def lightning_loop(config: GPTConfig, hp: PretrainParams, bf16: bool, compile_: bool, steps: int,
                   warmup: int) -> tuple[float, float]:
    """Our GPTModule under a Trainer with the pretrain stage's settings, progress bar and TrainingLog;
    returns (median seconds per step, fraction of all step time spent in those two callbacks)."""
    torch.manual_seed(0)
    hp = hp.model_copy(update={"compile": compile_, "precision": "bf16-mixed" if bf16 else "32-true",
                               "max_steps": warmup + steps})
    module = GPTModule(config, hp, hp.max_steps)
    timer, clock = StepTimer(), HookClock()
    tokens = hp.batch_size * config.block_size
    log = TrainingLog(lambda metrics, step: None, hp.log_every, tokens, GPT(config).flops_per_token(), 1e12, 4.0)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=hp.precision, max_steps=hp.max_steps,
                        gradient_clip_val=hp.grad_clip, logger=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[timer, log])
    for callback in (log, trainer.progress_bar_callback):
        clock.wrap(callback)
    loader = DataLoader(RandomTokens(config.vocab_size, config.block_size), batch_size=hp.batch_size)
    trainer.fit(module, train_dataloaders=loader)
    return statistics.median(timer.step_times()[warmup:]), clock.seconds / sum(timer.step_times())


def plain_seconds(config: GPTConfig, hp: PretrainParams, bf16: bool, compile_: bool, steps: int,
                  warmup: int) -> tuple[float, float]:
    return plain_loop(config, hp, bf16, compile_, steps, warmup), 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="reports/bench/train_throughput.json")
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.params).read_text())
    hp = default_pretrain(raw)
    config = GPTConfig(vocab_size=raw["tokenizer"]["vocab_size"], **hp.model.gpt_fields())
    torch.set_num_threads(hp.num_threads or usable_cpus())
    default_bf16 = effective_precision(hp.precision, "cpu").startswith("bf16")
    flops, tokens = GPT(config).flops_per_token(), hp.batch_size * config.block_size
    peaks = {bf16: exclusive_peak_tflops(PRECISION_DTYPES["bf16-mixed" if bf16 else "32-true"], seconds=2.0) * 1e12
             for bf16 in {False, default_bf16}}
    runs = [("plain", plain_seconds, False, False), ("lightning", lightning_loop, False, False),
            ("plain", plain_seconds, default_bf16, hp.compile), ("lightning", lightning_loop, default_bf16, hp.compile)]
    speed, hook_share = {}, {}
    for loop, fn, bf16, compile_ in dict.fromkeys(runs):
        seconds, hook_share[loop, bf16, compile_] = fn(config, hp, bf16, compile_, args.steps, args.warmup)
        speed[loop, bf16, compile_] = tokens / seconds
    report_all(speed, hook_share["lightning", default_bf16, hp.compile], peaks, flops, (default_bf16, hp.compile),
               hp, config, args.out)


def report_all(speed: dict, hook_share: float, peaks: dict, flops: float, default: tuple[bool, bool],
               hp: PretrainParams, config: GPTConfig, out: str) -> None:
    name = f"{'bf16-mixed' if default[0] else '32-true'}{' + compile' if default[1] else ''}"
    figures = [Figure(f"{loop}: {'bf16-mixed' if bf16 else '32-true'}{' + compile' if c else ''}", tps, "tok/s",
                      note=f"MFU {tps * flops / peaks[bf16]:.1%}") for (loop, bf16, c), tps in speed.items()]
    fallback = "" if default[0] or hp.precision.startswith("32") else f"{hp.precision} falls back to fp32 here"
    default_speed = speed["lightning", *default]
    figures += [
        Figure(f"Lightning / plain, {name} (default)", default_speed / speed["plain", *default], "x", target=0.95),
        Figure("Lightning / plain, eager fp32", speed["lightning", False, False] / speed["plain", False, False], "x",
               target=0.95),
        Figure(f"default ({name}) / eager fp32", default_speed / speed["lightning", False, False], "x", target=2.0,
               note=fallback),
        Figure(f"MFU of the default vs measured {name.split()[0]} peak", default_speed * flops / peaks[default[0]],
               "", target=0.55, note=f"peak {peaks[default[0]] / 1e9:,.0f} GFLOP/s"),
        Figure("progress bar + logging: share of step time in their hooks", hook_share, "", target=0.03,
               higher_is_better=False, note=f"{name}; plus the rich bar's 1 Hz redraw thread"),
    ]
    report(f"pretrain throughput, {config.n_layer}x{config.n_embd} block {config.block_size} batch {hp.batch_size}",
           figures, out)


if __name__ == "__main__":
    main()
