"""Loss as a function of parameters and tokens, `L(N, D) = E + A / N**alpha + B / D**beta` (Chinchilla's form).

A ladder whose rungs all see the same tokens per parameter moves N and D together, and the two terms
cannot be told apart (fit.py's loss-of-compute law is all it supports). Rungs at two or more ratios
separate them, and then the law answers what the budget should buy: the size whose predicted loss at
the tokens the budget affords is lowest (scratchlm.scaling.choice).

N and D are scaled by the smallest rung's before fitting (so the fit is well conditioned), and E is
bounded by the lowest rung's loss. The interval is a residual bootstrap: each rung's fitted loss plus
a residual drawn from the fit's own (centred, and widened by sqrt(n / (n - 5)) for the five unknowns),
refitted, and the percentiles of the refitted predictions bound each point. Not fit.py's case
bootstrap: five unknowns on six to ten rungs leave too few resamples with enough distinct rungs to fit.
The resamples' predictions are kept, so a choice can say how often it would have been made.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from scratchlm.scaling.fit import Rung

#: the law's unknowns (E, A, alpha, B, beta), and the fewest distinct rungs it is fitted to (one more)
UNKNOWNS = 5
MIN_RUNGS = UNKNOWNS + 1


@dataclass
class JointLaw:
    """`loss(N, D) = E + a * (N / N0) ** -alpha + b * (D / D0) ** -beta`, and its rms error on the rungs."""

    E: float
    a: float
    alpha: float
    b: float
    beta: float
    N0: float
    D0: float
    rmse: float = 0.0

    def loss(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.a * (n / self.N0) ** -self.alpha + self.b * (d / self.D0) ** -self.beta

    def as_dict(self) -> dict[str, float]:
        """Chinchilla's unscaled constants (`A / N**alpha`), as papers print them, and the fit's error."""
        return {"E": self.E, "A": self.a * self.N0 ** self.alpha, "alpha": self.alpha,
                "B": self.b * self.D0 ** self.beta, "beta": self.beta, "rmse": self.rmse}


@dataclass
class JointPrediction:
    """The law's loss at each (N, D) point, the bootstrap interval of each, and every resample's predictions."""

    law: JointLaw
    loss: np.ndarray
    low: np.ndarray
    high: np.ndarray
    samples: np.ndarray
    """(resamples that could be fitted) × points"""
    confidence: float
    resamples: int
    failed_resamples: int


def identifiable(rungs: list[Rung]) -> str | None:
    """Why L(N, D) cannot be fitted to these rungs, or None when it can."""
    distinct = {(r.params, r.tokens) for r in rungs}
    ratios = {round(r.tokens / r.params, 6) for r in rungs}
    if len(ratios) < 2:
        return "every rung has the same tokens per parameter (give rungs their own tokens_per_param)"
    if len(distinct) < MIN_RUNGS:
        return f"L(N, D) needs at least {MIN_RUNGS} distinct rungs, got {len(distinct)}"
    return None


def fit_joint(rungs: list[Rung], n0: float | None = None, d0: float | None = None,
              start: JointLaw | None = None) -> JointLaw:
    """Least squares of L(N, D) on the rungs (from `start`'s constants when given: a bootstrap refit starts at the
    full fit, and converges in a fraction of the evaluations); a ValueError says why it cannot be fitted."""
    if reason := identifiable(rungs):
        raise ValueError(reason)
    from scipy.optimize import OptimizeWarning, curve_fit

    n = np.array([r.params for r in rungs], dtype=float)
    d = np.array([r.tokens for r in rungs], dtype=float)
    y = np.array([r.val_loss for r in rungs], dtype=float)
    n0 = float(n.min()) if n0 is None else n0
    d0 = float(d.min()) if d0 is None else d0

    def law(nd: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
        return e + a * (nd[0] / n0) ** -alpha + b * (nd[1] / d0) ** -beta

    floor = float(y.min())
    guess = (floor * 0.5, (float(y.max()) - floor * 0.5) / 2, 0.3, (float(y.max()) - floor * 0.5) / 2, 0.3)
    if start is not None:
        guess = (min(start.E, floor * 0.999), start.a, start.alpha, start.b, start.beta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            (e, a, alpha, b, beta), _ = curve_fit(law, np.vstack([n, d]), y, p0=guess, maxfev=20000,
                                                  bounds=([0, 0, 1e-4, 0, 1e-4], [floor, np.inf, 3, np.inf, 3]))
        except RuntimeError as error:
            raise ValueError(f"L(N, D) did not converge ({error})") from None
    fitted = JointLaw(float(e), float(a), float(alpha), float(b), float(beta), n0, d0)
    fitted.rmse = float(np.sqrt(np.mean((fitted.loss(n, d) - y) ** 2)))
    return fitted


@dataclass
class JointFit:
    """The law fitted to the rungs and its bootstrap refits: ask it for any points' losses and intervals."""

    law: JointLaw
    refits: list[JointLaw]
    resamples: int

    def predict(self, points: list[tuple[float, float]], confidence: float = 0.9) -> JointPrediction:
        n = np.array([p[0] for p in points], dtype=float)
        d = np.array([p[1] for p in points], dtype=float)
        stack = np.array([refit.loss(n, d) for refit in self.refits])
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(stack, [tail, 100 - tail], axis=0)
        return JointPrediction(self.law, np.asarray(self.law.loss(n, d)), low, high, stack, confidence,
                               self.resamples, self.resamples - len(self.refits))


def fit_with_bootstrap(rungs: list[Rung], resamples: int = 1000, seed: int = 0) -> JointFit:
    """L(N, D) and its residual-bootstrap refits (see the module docstring)."""
    law = fit_joint(rungs)
    fitted = np.array([float(law.loss(r.params, r.tokens)) for r in rungs])
    residuals = np.array([r.val_loss for r in rungs]) - fitted
    residuals = (residuals - residuals.mean()) * np.sqrt(len(rungs) / max(1, len(rungs) - UNKNOWNS))
    rng = np.random.default_rng(seed)
    refits = []
    for _ in range(resamples):
        noisy = fitted + rng.choice(residuals, len(rungs))
        try:
            refits.append(fit_joint([replace(r, val_loss=float(y)) for r, y in zip(rungs, noisy, strict=True)],
                                    n0=law.N0, d0=law.D0, start=law))
        except ValueError:
            continue
    if len(refits) < max(10, resamples // 10):
        raise ValueError(f"only {len(refits)} of {resamples} bootstrap refits of L(N, D) converged: add rungs")
    return JointFit(law, refits, resamples)


def predict_joint(rungs: list[Rung], points: list[tuple[float, float]], confidence: float = 0.9,
                  resamples: int = 1000, seed: int = 0) -> JointPrediction:
    """L(N, D) at each (N, D) point with residual-bootstrap intervals."""
    return fit_with_bootstrap(rungs, resamples, seed).predict(points, confidence)
