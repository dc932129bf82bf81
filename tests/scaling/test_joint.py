"""L(N, D) fitted to a ladder at two ratios: recovered from synthetic rungs, intervals that cover, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.scaling.fit import Rung
from scratchlm.scaling.joint import fit_joint, identifiable, predict_joint

TRUTH = {"E": 1.5, "A": 400.0, "alpha": 0.4, "B": 600.0, "beta": 0.35}


def true_loss(n: float, d: float) -> float:
    return TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]


def grid(noise: float = 0.0, seed: int = 0, sizes=(1e5, 2e5, 4e5, 8e5), ratios=(1, 4)) -> list[Rung]:
    rng = np.random.default_rng(seed)
    return [Rung(f"{n:g}-{ratio}", int(n), int(n * ratio), 6 * n * n * ratio,
                 true_loss(n, n * ratio) + rng.normal(0, noise)) for n in sizes for ratio in ratios]


def test_a_noiseless_grid_gives_back_its_law() -> None:
    law = fit_joint(grid()).as_dict()
    assert {k: law[k] for k in TRUTH} == pytest.approx(TRUTH, rel=2e-2)
    assert law["rmse"] < 1e-4


def test_one_ratio_or_too_few_rungs_cannot_be_fitted() -> None:
    one_ratio = grid(ratios=(2,), sizes=(1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6))
    assert "same tokens per parameter" in identifiable(one_ratio)
    with pytest.raises(ValueError, match="same tokens per parameter"):
        fit_joint(one_ratio)
    assert identifiable(grid(sizes=(1e5, 2e5))) == "L(N, D) needs at least 6 distinct rungs, got 4"


def test_the_interval_covers_a_point_off_the_grid_about_as_often_as_it_claims() -> None:
    """A size inside the ladder's range trained on 3x the tokens of its largest rung: the truth falls inside
    most 90% intervals of noisy ladders (far below would be a broken interval), and each holds its estimate."""
    point = (3e5, 6e6)
    truth = true_loss(*point)
    inside = 0
    for seed in range(20):
        p = predict_joint(grid(noise=0.01, seed=seed), [point], confidence=0.9, resamples=100, seed=seed)
        inside += p.low[0] <= truth <= p.high[0]
        assert p.low[0] <= p.loss[0] <= p.high[0]
        assert p.samples.shape[1] == 1 and p.samples.shape[0] == p.resamples - p.failed_resamples
    assert inside >= 13  # ≥ 65% of 20
