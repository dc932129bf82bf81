"""Task-level predictability: does a benchmark's accuracy follow the ladder's loss, or move the other way?

Loss falls smoothly with compute; accuracy on a task need not (it can sit at chance and then jump, or
get worse as the model grows: inverse scaling). For each task the rungs' accuracies are regressed on
their validation losses; the change the fit implies across the ladder's loss range is compared with
the accuracies' standard error, so a trend smaller than the noise is called flat, not a direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def task_trend(losses: list[float], accuracies: list[float], stderr: float) -> dict[str, Any]:
    """The trend of one task across rungs: slope of accuracy on loss, the change across the ladder, the call."""
    from scipy.stats import spearmanr

    x, y = np.asarray(losses, dtype=float), np.asarray(accuracies, dtype=float)
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0
    change = -slope * float(np.ptp(x))  # accuracy gained from the ladder's worst loss to its best
    rho = float(spearmanr(x, y).statistic) if np.ptp(y) > 0 else 0.0
    if np.ptp(y) == 0 or abs(change) < 2 * stderr:
        call = "flat (within noise)"
    elif change > 0:
        call = "follows loss"
    else:
        call = "inverse scaling"
    return {"slope_per_nat": slope, "change_across_ladder": change, "spearman_loss_acc": rho, "trend": call}


def task_trends(rungs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{task: accuracies per rung (in ladder order), chance, mean standard error, trend} over the rungs' scores."""
    losses = [r["val_loss"] for r in rungs]
    tasks = sorted(set.intersection(*(set(r["benchmarks"]) for r in rungs))) if rungs else []
    out = {}
    for task in tasks:
        scores = [r["benchmarks"][task] for r in rungs]
        accuracies = [float(s["acc"]) for s in scores]
        stderr = float(np.mean([s.get("acc_stderr", 0.0) for s in scores]))
        out[task] = {"acc": dict(zip((r["rung"] for r in rungs), accuracies, strict=True)),
                     "chance": float(scores[0].get("chance", 0.0)), "acc_stderr": stderr,
                     **task_trend(losses, accuracies, stderr)}
    return out
