"""Task trends across the ladder: follows loss, inverse scaling, or flat within noise."""

from __future__ import annotations

from scratchlm.scaling.tasks import task_trend, task_trends


def test_accuracy_rising_as_loss_falls_follows_loss_and_the_reverse_is_inverse() -> None:
    losses = [7.0, 6.5, 6.0, 5.5]
    assert task_trend(losses, [0.25, 0.30, 0.35, 0.40], 0.02)["trend"] == "follows loss"
    assert task_trend(losses, [0.40, 0.35, 0.30, 0.25], 0.02)["trend"] == "inverse scaling"
    flat = task_trend(losses, [0.30, 0.31, 0.29, 0.30], 0.02)
    assert flat["trend"] == "flat (within noise)" and abs(flat["change_across_ladder"]) < 0.04


def test_trends_per_task_with_chance_and_each_rungs_accuracy() -> None:
    rungs = [{"rung": name, "val_loss": loss, "benchmarks": {
        "piqa": {"acc": acc, "acc_stderr": 0.01, "chance": 0.5},
        "lambada": {"acc": 0.0, "acc_stderr": 0.0, "chance": 0.0}}}
        for name, loss, acc in (("a", 7.0, 0.50), ("b", 6.0, 0.55), ("c", 5.0, 0.60))]
    trends = task_trends(rungs)
    assert trends["piqa"]["acc"] == {"a": 0.5, "b": 0.55, "c": 0.6} and trends["piqa"]["chance"] == 0.5
    assert trends["piqa"]["trend"] == "follows loss"
    assert trends["lambada"]["trend"] == "flat (within noise)"
