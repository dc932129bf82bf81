"""Does the ladder's choice buy the best model for pretrain's time? Sizes trained for the same minutes, compared.

Reads the committed DAG's choice (reports/scaling/law.json: every candidate's steps for the budget and its
predicted loss) and trains, on this machine, the old fixed default (4 x 4 x 256, 510 steps), the chosen
size and the runner-up, each at the steps the budget buys it, one after the other on idle cores. Each
final model is scored on every validation window of the val split (not only pretrain's 32), so each
size's loss has a bootstrap interval, and each pair a paired one (the same windows): "best within noise"
is a statement about that interval. Bits per byte are loss times the split's tokens per byte over ln 2,
so their ratio is the loss ratio. Targets (issue 30): the chosen size ≤ 0.95x the default's val bits
per byte at the default's wall time; its predicted loss within 3% of the measured.
Writes reports/bench/ladder_choice.json.   Usage: python bench/ladder_choice.py [--windows 400]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench import Figure, report

from scratchlm.config.loader import read_params_file
from scratchlm.config.training import PretrainParams
from scratchlm.model.gpt import load_model
from scratchlm.scaling.chosen import at_shape
from scratchlm.training.data import FixedWindows
from scratchlm.training.pretrain import pretrain

OUT = Path("reports/bench/ladder_choice.json")
DEFAULT = ((4, 4, 256), 510)  # the fixed default before the ladder chose: 5.3M parameters, 510 steps


def window_losses(model_dir: Path, windows: int) -> np.ndarray:
    """Mean next-token loss (nats) of each validation window, in the split's order."""
    model = load_model(model_dir).eval()
    data = FixedWindows(Path("data/tokens/val.json"), model.config.block_size, windows)
    losses = []
    with torch.no_grad():
        for i in range(len(data)):
            x, y = data[i]
            losses.append(float(model(x[None], y[None])[1]))
    return np.array(losses)


def train(recipe: PretrainParams, shape: tuple[int, int, int], steps: int, windows: int) -> dict[str, Any]:
    params = at_shape(recipe, shape, steps)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics, _ = pretrain(Path("data/tokens"), Path("models/tokenizer"), Path(tmp) / "out", Path(tmp) / "ckpt",
                              params, None)
        wall = time.perf_counter() - started
        losses = window_losses(Path(tmp) / "out", windows)
    return {"shape": list(shape), "steps": steps, "params": metrics["params_with_embeddings"], "wall_seconds": wall,
            "val_loss_32": metrics["val_loss"], "val_bpb_32": metrics["val_bpb"],
            "bpb_per_nat": metrics["val_bpb"] / metrics["val_loss"], "window_losses": losses.tolist()}


def from_dag(shape: tuple[int, int, int], steps: int, windows: int) -> dict[str, Any] | None:
    """The DAG's own pretrain run where it trained this shape for these steps (model.size from_ladder): its
    weights scored here, its wall time from its run record. None where it did not (then it is trained here)."""
    metrics = json.loads(Path("reports/metrics/pretrain.json").read_text())
    if metrics.get("shape") != dict(zip(("n_layer", "n_head", "n_embd"), shape, strict=True)) or \
            metrics["steps"] != steps:
        return None
    record = json.loads(Path("reports/runs/pretrain.json").read_text())
    return {"shape": list(shape), "steps": steps, "params": metrics["params_with_embeddings"],
            "wall_seconds": record["seconds"], "val_loss_32": metrics["val_loss"], "val_bpb_32": metrics["val_bpb"],
            "bpb_per_nat": metrics["val_bpb"] / metrics["val_loss"], "from_dag": True,
            "window_losses": window_losses(Path("models/pretrain"), windows).tolist()}


def interval(values: np.ndarray, rng: np.random.Generator, confidence: float = 0.9) -> tuple[float, float]:
    """Bootstrap percentile interval of the mean over windows."""
    means = [float(values[rng.integers(0, len(values), len(values))].mean()) for _ in range(2000)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=400, help="validation windows scored per model")
    args = parser.parse_args()
    recipe = PretrainParams(**{**read_params_file(Path("params.yaml"))["pretrain"]})
    choice = json.loads(Path("reports/scaling/law.json").read_text())["choice"]
    ranked = sorted(choice["candidates"], key=lambda c: c["loss"])
    runs: dict[str, tuple[tuple[int, int, int], int, dict[str, Any] | None]] = {"default (4x4x256, 510 steps)":
                                                                                (*DEFAULT, None)}
    for label, row in (("chosen", ranked[0]), ("runner-up", ranked[1])):
        shape = (row["n_layer"], row["n_head"], row["n_embd"])
        runs[f"{label} ({'x'.join(map(str, shape))}, {row['steps']} steps)"] = (shape, row["steps"], row)
    rng = np.random.default_rng(0)
    results, figures = {}, []
    for name, (shape, steps, row) in runs.items():
        made = from_dag(shape, steps, args.windows) if name.startswith("chosen") else None
        made = made or train(recipe, shape, steps, args.windows)
        losses = np.array(made["window_losses"])
        low, high = interval(losses, rng)
        made.update(val_loss=float(losses.mean()), low=low, high=high, predicted=row and row["loss"],
                    predicted_low=row and row["low"], predicted_high=row and row["high"])
        results[name] = made
        figures.append(Figure(f"{name}: val loss, {len(losses)} windows", made["val_loss"], "nats",
                              note=f"90% {low:.3f}-{high:.3f}; {made['wall_seconds']:.0f} s; bpb "
                                   f"{made['val_loss'] * made['bpb_per_nat']:.4f}", higher_is_better=False))
    names = list(results)
    default, chosen, runner = (results[n] for n in names)
    base = np.array(default["window_losses"])
    for name in names[1:]:
        diff = np.array(results[name]["window_losses"]) - base
        low, high = interval(diff, rng)
        figures.append(Figure(f"{name.split(' (')[0]} - default: val loss", float(diff.mean()), "nats",
                              note=f"paired 90% {low:+.3f} to {high:+.3f}"))
    diff = np.array(chosen["window_losses"]) - np.array(runner["window_losses"])
    low, high = interval(diff, rng)
    figures.append(Figure("chosen - runner-up: val loss", float(diff.mean()), "nats",
                          note=f"paired 90% {low:+.3f} to {high:+.3f} ({'best' if high < 0 else 'within noise'})"))
    figures.append(Figure("chosen / default val bits per byte", chosen["val_loss"] / default["val_loss"], "x",
                          target=0.95, higher_is_better=False))
    figures.append(Figure("chosen / default wall time", chosen["wall_seconds"] / default["wall_seconds"], "x"))
    error = abs(chosen["predicted"] - chosen["val_loss_32"]) / chosen["val_loss_32"]
    figures.append(Figure("chosen: |predicted - measured| / measured", error * 100, "%", target=3,
                          higher_is_better=False, note=f"predicted {chosen['predicted']:.3f} "
                          f"({chosen['predicted_low']:.3f}-{chosen['predicted_high']:.3f}), measured "
                          f"{chosen['val_loss_32']:.3f} on pretrain's 32 windows"))
    report("The ladder's choice at pretrain's budget", figures, OUT,
           extra={"runs": {n: {k: v for k, v in r.items() if k != "window_losses"} for n, r in results.items()},
                  "budget": choice["budget"], "ln2": math.log(2)})


if __name__ == "__main__":
    main()
