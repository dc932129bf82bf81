"""Scaling laws fitted to a ladder of small runs: loss as a power law of compute, with bootstrap intervals.

Two forms of loss over training FLOPs C (C0 is the smallest rung's compute, so the fit is well
conditioned): a power law `L = A * (C / C0) ** -alpha`, a straight line on log-log axes, and the
saturating `L = E + A * (C / C0) ** -alpha`, whose offset E is the loss no compute removes. Which one
extrapolates on this ladder is measured, not assumed: each is fitted to every rung but the largest and
asked for the largest; the one that misses it by less is used (on a short ladder of undertrained runs
the offset often bends the curve too early). The interval is a case bootstrap: rungs are resampled
with replacement, each resample refitted and asked for the prediction, and the percentiles of those
predictions bound it, so it widens when one rung pulls the curve. A ladder that varies parameters and
tokens independently (two or more tokens-per-parameter ratios) is fitted as L(N, D) instead (joint.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rung:
    """One trained rung: its name, parameters (with embeddings), tokens seen, training FLOPs, final val loss."""

    name: str
    params: int
    tokens: int
    flops: float
    val_loss: float


FORMS = ("power", "power_with_offset")
#: fewest distinct compute values each form can be fitted to
MIN_POINTS = {"power": 2, "power_with_offset": 3}


@dataclass
class PowerLaw:
    """`loss(C) = E + A * (C / C0) ** -alpha` (E = 0 for the `power` form), and how well it fits its rungs."""

    form: str
    E: float
    A: float
    alpha: float
    C0: float
    rmse: float

    def loss(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.E + self.A * (np.asarray(flops, dtype=float) / self.C0) ** -self.alpha


@dataclass
class Prediction:
    """The law, its prediction at `flops`, the bootstrap interval at `confidence`, and what the resamples gave."""

    law: PowerLaw
    flops: float
    loss: float
    low: float
    high: float
    confidence: float
    resamples: int
    failed_resamples: int
    holdout_errors: dict[str, float] = field(default_factory=dict)
    """Each form's miss on the largest rung when fitted to the others (how the form was chosen)."""
    curve: list[tuple[float, float, float, float]] = field(default_factory=list)
    """(FLOPs, fitted loss, interval low, interval high) from the smallest rung to past the prediction."""


def fit_power_law(flops: np.ndarray, losses: np.ndarray, form: str = "power_with_offset",
                  c0: float | None = None) -> PowerLaw:
    """Least squares of one form: `power` as a line in log-log, `power_with_offset` with E in [0, min loss) and
    alpha in (0, 3). Fewer distinct compute values than the form needs is a ValueError naming the count."""
    flops, losses = np.asarray(flops, dtype=float), np.asarray(losses, dtype=float)
    distinct = len(set(flops.tolist()))
    if distinct < MIN_POINTS[form]:
        raise ValueError(f"the {form} form needs at least {MIN_POINTS[form]} distinct compute values, got {distinct}")
    c0 = float(flops.min()) if c0 is None else c0
    x = flops / c0
    if form == "power":
        slope, intercept = np.polyfit(np.log(x), np.log(losses), 1)
        law = PowerLaw(form, 0.0, float(np.exp(intercept)), float(-slope), c0, 0.0)
    else:
        from scipy.optimize import OptimizeWarning, curve_fit

        floor = float(losses.min())

        def curve(x: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
            return e + a * x ** -alpha

        start = (floor * 0.5, max(float(losses.max()) - floor * 0.5, 1e-3), 0.3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (e, a, alpha), _ = curve_fit(curve, x, losses, p0=start, maxfev=20000,
                                         bounds=([0.0, 1e-9, 1e-4], [floor, np.inf, 3.0]))
        law = PowerLaw(form, float(e), float(a), float(alpha), c0, 0.0)
    law.rmse = float(np.sqrt(np.mean((law.loss(flops) - losses) ** 2)))
    return law


def choose_form(flops: np.ndarray, losses: np.ndarray) -> tuple[str, dict[str, float]]:
    """The form that best predicts the largest rung from the others (the simpler one on a tie or when the
    ladder is too short to hold one out), with each form's miss."""
    order = np.argsort(flops)
    rest, largest = order[:-1], order[-1]
    errors = {}
    for form in FORMS:
        try:
            law = fit_power_law(flops[rest], losses[rest], form)
        except (ValueError, RuntimeError):
            continue
        errors[form] = abs(float(law.loss(flops[largest])) - float(losses[largest]))
    return (min(errors, key=lambda f: (errors[f], FORMS.index(f))) if errors else "power"), errors


def predict(rungs: list[Rung], flops: float, confidence: float = 0.9, resamples: int = 1000,
            seed: int = 0, form: str | None = None) -> Prediction:
    """The law's loss at `flops` with a case-bootstrap interval; `form` None chooses it (`choose_form`).
    Resamples with too few distinct rungs for the form cannot be fitted and are counted, not used."""
    x = np.array([r.flops for r in rungs], dtype=float)
    y = np.array([r.val_loss for r in rungs], dtype=float)
    holdout: dict[str, float] = {}
    if form is None:
        form, holdout = choose_form(x, y)
    law = fit_power_law(x, y, form)
    rng = np.random.default_rng(seed)
    grid = np.geomspace(x.min(), max(flops, x.max()) * 1.5, 40)
    samples, curves, failed = [], [], 0
    for _ in range(resamples):
        pick = rng.integers(0, len(rungs), len(rungs))
        try:
            boot = fit_power_law(x[pick], y[pick], form, c0=law.C0)
        except (ValueError, RuntimeError):
            failed += 1
            continue
        samples.append(float(boot.loss(flops)))
        curves.append(boot.loss(grid))
    if len(samples) < max(10, resamples // 10):
        raise ValueError(f"only {len(samples)} of {resamples} bootstrap resamples could be fitted: add rungs")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    bands = np.percentile(np.array(curves), [tail, 100 - tail], axis=0)
    curve = [(float(c), float(law.loss(c)), float(lo), float(hi)) for c, lo, hi in zip(grid, *bands, strict=True)]
    return Prediction(law, float(flops), float(law.loss(flops)), float(low), float(high), confidence, resamples,
                      failed, holdout, curve)
