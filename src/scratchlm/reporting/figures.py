"""The model card's figures, drawn with matplotlib's non-interactive backend.

Each function takes plain numbers (already read from the metrics files) and writes one PNG, so the
figures can be redrawn from any run's metrics. PNG metadata carries no timestamp, so the same
numbers give the same bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG_META = {"Software": None}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)
    return path


def read_loss_curve(path: Path) -> dict[str, list[tuple[int, float]]]:
    """`step,train_loss,val_loss` rows (blanks where a metric was not logged) → one series each."""
    series: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_loss": []}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for key in series:
                if row.get(key):
                    series[key].append((int(row["step"]), float(row[key])))
    return series


def loss_curves(series: dict[str, list[tuple[int, float]]], path: Path, baseline: float | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, points in series.items():
        if points:
            ax.plot(*zip(*points, strict=True), label=name.replace("_", " "), marker="o" if "val" in name else None,
                    markersize=3)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle=":", label="unigram baseline")
    ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="Pretraining loss")
    ax.legend()
    return _save(fig, path)


def benchmark_bars(tasks: dict[str, dict[str, float]], path: Path) -> Path:
    """acc and acc_norm per task with ±1 standard error, and each task's chance level as a red tick."""
    names = [t for t in tasks if "acc_norm" in tasks[t]]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = range(len(names))
    for offset, key in ((-0.2, "acc"), (0.2, "acc_norm")):
        ax.bar([i + offset for i in x], [tasks[t][key] for t in names], width=0.4, label=key,
               yerr=[tasks[t][f"{key}_stderr"] for t in names], capsize=2)
    for i, task in enumerate(names):
        ax.hlines(tasks[task]["chance"], i - 0.45, i + 0.45, colors="red", linestyles="--",
                  label="chance" if i == 0 else None)
    ax.set_xticks(list(x), names, rotation=20)
    ax.set(ylabel="accuracy", ylim=(0, 1), title="Zero-shot benchmarks")
    ax.legend()
    return _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Classifier, test split")
    return _save(fig, path)


def data_funnel(stages: Sequence[tuple[str, int]], path: Path) -> Path:
    """Documents left after each data stage, top to bottom."""
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(stages)))
    names, counts = zip(*stages, strict=True)
    ax.barh(range(len(stages)), counts, color="tab:green")
    for i, count in enumerate(counts):
        ax.text(count, i, f" {count:,}", va="center")
    ax.set_yticks(range(len(stages)), names)
    ax.invert_yaxis()
    ax.set(xlabel="pretraining documents", title="Data funnel", xlim=(0, max(counts) * 1.25 or 1))
    return _save(fig, path)


def scaling_law(rungs: Sequence[tuple[float, float]], curve: Sequence[dict[str, float]],
                predicted: tuple[float, float, float, float], measured: float | None, path: Path) -> Path:
    """Log-log: the rungs' (FLOPs, val loss), the fitted law with its bootstrap band, the prediction for
    pretrain (FLOPs, loss, low, high) with its interval, and pretrain's measured loss where there is one."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [p["flops"] for p in curve]
    ax.fill_between(xs, [p["low"] for p in curve], [p["high"] for p in curve], alpha=0.2, label="interval")
    ax.plot(xs, [p["loss"] for p in curve], label="fitted law")
    ax.scatter(*zip(*rungs, strict=True), zorder=3, label="ladder rungs")
    flops, loss, low, high = predicted
    ax.errorbar([flops], [loss], yerr=[[loss - low], [high - loss]], fmt="s", capsize=4, zorder=4,
                label="predicted pretrain")
    if measured is not None:
        ax.scatter([flops], [measured], marker="*", s=160, zorder=5, label="measured pretrain")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("final val loss (nats/token)")
    ax.set_title("Predictable scaling: the ladder, the fit, pretrain")
    ax.legend(fontsize=8)
    return _save(fig, path)
