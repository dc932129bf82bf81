"""Quality per minute of training: the GPT-2 recipe (gpt2 + AdamW) against the modern one (modern + Muon).

Both on the default data and model width, each at the learning rate a small sweep picks (three values,
short runs of equal steps), then trained for the same wall-clock budget, alternating A/B/A/B so machine
noise hits both; each run's learning-rate schedule is sized to end at the budget (from the recipe's
step time in its sweep). Prints each recipe's val bits per byte at equal time and the speedrun figure:
the time the modern recipe needs to reach the GPT-2 recipe's final val loss, as a share of the GPT-2
recipe's time. Targets (issue 18): ≤ 0.6× the time, ≤ 0.95× the bits per byte.
Writes reports/bench/quality_per_compute.json. Usage: python bench/quality_per_compute.py [--minutes 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _bench import Figure, default_pretrain, report

from scratchlm.config.training import PretrainParams
from scratchlm.training.pretrain import pretrain

RECIPES = {"gpt2": {"architecture": "gpt2", "optimizer": "adamw", "lrs": [5e-4, 1e-3, 2e-3]},
           "modern": {"architecture": "modern", "optimizer": "muon", "lrs": [2e-3, 4e-3, 8e-3]}}


def params_for(base: dict[str, Any], recipe: str, lr: float, steps: int, val_every: int) -> PretrainParams:
    spec = RECIPES[recipe]
    return PretrainParams(**{**base, "model": {**base["model"], "architecture": spec["architecture"]},
                             "optimizer": spec["optimizer"], "lr": lr, "min_lr": lr / 10, "max_steps": steps,
                             "warmup_steps": min(base["warmup_steps"], steps // 10), "val_every": val_every,
                             "ckpt_every": 10**6, "sample_tokens": 1, "max_time_minutes": None})


def train(params: PretrainParams, work: Path) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """(final metrics, [(seconds since the start, val loss)] at each validation)."""
    curve: list[tuple[float, float]] = []
    started = time.perf_counter()

    def log(metrics: dict[str, Any], step: int) -> None:
        if "val_loss" in metrics:
            curve.append((time.perf_counter() - started, float(metrics["val_loss"])))

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        metrics, _ = pretrain(Path("data/tokens"), Path("models/tokenizer"), Path(tmp) / "out", Path(tmp) / "ckpt",
                              params, log)
    metrics["wall_seconds"] = time.perf_counter() - started
    return metrics, curve


def time_to(curve: list[tuple[float, float]], loss: float) -> float | None:
    return next((seconds for seconds, value in curve if value <= loss), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget of each main run")
    parser.add_argument("--sweep-steps", type=int, default=60, help="steps of each learning-rate sweep run")
    args = parser.parse_args()
    base = default_pretrain(yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))).model_dump()
    base = {**base, "compile": False}  # a few minutes' budget: compile's warm-up would be a large, noisy share
    work = Path(tempfile.mkdtemp(prefix="quality-"))
    chosen, step_seconds, sweep = {}, {}, {}
    for recipe, spec in RECIPES.items():
        results = {lr: train(params_for(base, recipe, lr, args.sweep_steps, args.sweep_steps), work)[0]
                   for lr in spec["lrs"]}
        sweep[recipe] = {lr: m["val_loss"] for lr, m in results.items()}
        chosen[recipe] = min(results, key=lambda lr: results[lr]["val_loss"])
        step_seconds[recipe] = statistics.median(m["wall_seconds"] / m["steps"] for m in results.values())
        print(f"{recipe}: sweep {sweep[recipe]} -> lr {chosen[recipe]}, {step_seconds[recipe]:.3f} s/step", flush=True)
    runs: dict[str, list[tuple[dict[str, Any], list[tuple[float, float]]]]] = {r: [] for r in RECIPES}
    for _ in range(2):  # A/B/A/B
        for recipe in RECIPES:
            steps = max(20, int(args.minutes * 60 / step_seconds[recipe]))
            params = params_for(base, recipe, chosen[recipe], steps, max(10, steps // 20))
            runs[recipe].append(train(params.model_copy(update={"max_time_minutes": args.minutes}), work))
            print(recipe, {k: runs[recipe][-1][0][k] for k in ("steps", "val_loss", "val_bpb", "wall_seconds")},
                  flush=True)
    bpb = {r: statistics.mean(m["val_bpb"] for m, _ in runs[r]) for r in RECIPES}
    loss = {r: statistics.mean(m["val_loss"] for m, _ in runs[r]) for r in RECIPES}
    gpt2_seconds = statistics.mean(curve[-1][0] for _, curve in runs["gpt2"])
    reached = [time_to(curve, loss["gpt2"]) for _, curve in runs["modern"]]
    ratio = statistics.mean(reached) / gpt2_seconds if all(t is not None for t in reached) else float("inf")
    figures = [
        Figure("gpt2 + AdamW: val bits per byte at equal time", bpb["gpt2"], "bpb", higher_is_better=False,
               note=f"lr {chosen['gpt2']}, val loss {loss['gpt2']:.3f}"),
        Figure("modern + Muon: val bits per byte at equal time", bpb["modern"], "bpb", higher_is_better=False,
               note=f"lr {chosen['modern']}, val loss {loss['modern']:.3f}"),
        Figure("modern / gpt2 bits per byte at equal time", bpb["modern"] / bpb["gpt2"], "x", target=0.95,
               higher_is_better=False),
        Figure("time for modern to reach gpt2's final val loss / gpt2's time", ratio, "x", target=0.6,
               higher_is_better=False, note="not reached within the budget" if ratio == float("inf") else ""),
    ]
    report("quality per compute: GPT-2 recipe vs modern recipe", figures, "reports/bench/quality_per_compute.json",
           {"minutes": args.minutes, "sweep_steps": args.sweep_steps, "sweep_val_loss": sweep, "chosen_lr": chosen,
            "seconds_per_step": step_seconds,
            "runs": {r: [{"metrics": {k: m[k] for k in ("steps", "val_loss", "val_bpb", "wall_seconds")},
                          "curve": c} for m, c in runs[r]] for r in RECIPES}})


if __name__ == "__main__":
    main()
