"""Tokens/s and MFU of the default profile's model: a plain PyTorch loop vs our Lightning loop.

Same model, batch, optimizer (fused AdamW), precision and compile setting in each pair, measured in
one run so the ratios hold on a noisy machine. Targets (issue #3/#8): Lightning ≥ 0.95× plain;
bf16-mixed + compile ≥ 2.0× fp32. Writes reports/bench/train_throughput.json.
Usage: python bench/train_throughput.py [--steps 20] [--warmup 5] [--peak-gflops N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader, IterableDataset

from scratchlm.config import PretrainParams
from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.training.module import GPTModule, param_groups


class RandomTokens(IterableDataset):
    def __init__(self, vocab: int, block: int) -> None:
        self.vocab, self.block = vocab, block

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        while True:
            tokens = torch.randint(0, self.vocab, (self.block + 1,), generator=generator)
            yield tokens[:-1], tokens[1:]


def plain_loop(config: GPTConfig, hp: PretrainParams, bf16: bool, compile_: bool, steps: int, warmup: int) -> float:
    """nanoGPT-style loop; returns seconds per optimizer step after warmup."""
    torch.manual_seed(0)
    model = GPT(config)
    forward = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW(param_groups(model, hp.weight_decay), lr=hp.lr, betas=(hp.beta1, hp.beta2),
                                  fused=True)
    batches = iter(DataLoader(RandomTokens(config.vocab_size, config.block_size), batch_size=hp.batch_size))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = next(batches)
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args) -> None:
        self.end = time.perf_counter()


def lightning_loop(config: GPTConfig, hp: PretrainParams, bf16: bool, compile_: bool, steps: int,
                   warmup: int) -> float:
    """Our GPTModule under a Trainer with the pretrain stage's settings (progress bar on)."""
    torch.manual_seed(0)
    hp = hp.model_copy(update={"compile": compile_, "precision": "bf16-mixed" if bf16 else "32-true",
                               "max_steps": warmup + steps})
    module = GPTModule(config, hp)
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=hp.precision, max_steps=hp.max_steps,
                        gradient_clip_val=hp.grad_clip, logger=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer], enable_model_summary=False)
    loader = DataLoader(RandomTokens(config.vocab_size, config.block_size), batch_size=hp.batch_size)
    trainer.fit(module, train_dataloaders=loader)
    return (timer.end - timer.start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--vocab-size", type=int, default=None, help="default: params tokenizer.vocab_size")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-gflops", type=float, default=None, help="default: reports/bench/matmul_peak.json")
    parser.add_argument("--out", default="reports/bench/train_throughput.json")
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.params).read_text())
    hp = PretrainParams(**raw["pretrain"])
    vocab = args.vocab_size or raw["tokenizer"]["vocab_size"]
    config = GPTConfig(vocab_size=vocab, **hp.model.model_dump())
    torch.set_num_threads(hp.num_threads or os.cpu_count() or 1)
    peak = args.peak_gflops or json.loads(Path("reports/bench/matmul_peak.json").read_text())["peak_gflops"]["bf16"]
    tokens_per_step = hp.batch_size * config.block_size
    flops_per_token = GPT(config).flops_per_token()
    rows = []
    for loop, fn in (("plain", plain_loop), ("lightning", lightning_loop)):
        for bf16, compile_ in ((False, False), (True, False), (True, True)):
            seconds = fn(config, hp, bf16, compile_, args.steps, args.warmup)
            tps = tokens_per_step / seconds
            rows.append({"loop": loop, "precision": "bf16-mixed" if bf16 else "32-true", "compile": compile_,
                         "tokens_per_s": tps, "mfu": tps * flops_per_token / (peak * 1e9)})
    report(rows, config, hp, peak, args.out)


def report(rows: list[dict], config: GPTConfig, hp: PretrainParams, peak: float, out: str) -> None:
    print(f"model {config.n_layer}x{config.n_embd} block {config.block_size} batch {hp.batch_size}; "
          f"MFU against measured bf16 peak {peak:.0f} GFLOP/s")
    print(f"{'loop':<10}{'precision':<12}{'compile':<9}{'tok/s':>9}{'MFU':>8}")
    for r in rows:
        print(f"{r['loop']:<10}{r['precision']:<12}{r['compile']!s:<9}{r['tokens_per_s']:>9.0f}{r['mfu']:>8.1%}")
    get = {(r["loop"], r["precision"], r["compile"]): r["tokens_per_s"] for r in rows}
    ratios = {
        "lightning_vs_plain_default": get[("lightning", "bf16-mixed", True)] / get[("plain", "bf16-mixed", True)],
        "lightning_vs_plain_fp32": get[("lightning", "32-true", False)] / get[("plain", "32-true", False)],
        "bf16_compile_vs_fp32_lightning": get[("lightning", "bf16-mixed", True)] / get[("lightning", "32-true", False)],
    }
    targets = {"lightning_vs_plain_default": 0.95, "lightning_vs_plain_fp32": 0.95,
               "bf16_compile_vs_fp32_lightning": 2.0}
    for name, value in ratios.items():
        mark = 'pass' if value >= targets[name] else 'SHORT'
        print(f"{name:<34}{value:>6.2f}x  target ≥ {targets[name]:.2f}x  {mark}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"rows": rows, "ratios": ratios, "targets": targets,
                                     "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    default = next(r for r in rows if r["loop"] == "lightning" and r["compile"])
    print(f"summary: default setting {default['tokens_per_s']:.0f} tok/s, MFU {default['mfu']:.1%}; "
          f"Lightning/plain {ratios['lightning_vs_plain_default']:.2f}x; "
          f"bf16+compile/fp32 {ratios['bf16_compile_vs_fp32_lightning']:.2f}x")


if __name__ == "__main__":
    main()
