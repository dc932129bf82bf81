"""The `scaling_fit` stage's work: the rungs' results in, the fitted law and pretrain's predicted loss out.

The prediction is written before `pretrain` runs: what the pretrain run will cost is computed from its
params (parameters from the model on the meta device, tokens from steps × batch × context), or, with
model.size from_ladder, is the size and tokens chosen here for its budget, which pretrain then reads
from law.json. The law is asked for the loss at that size and compute; the report later sets the
measured loss beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scratchlm.config.base import ConfigError
from scratchlm.config.scaling import ScalingFitParams, ShapeParams
from scratchlm.config.training import PretrainParams
from scratchlm.io import DataFormatError
from scratchlm.scaling import LAW_FILE
from scratchlm.scaling.choice import choose_size, read_throughput
from scratchlm.scaling.fit import Rung, predict
from scratchlm.scaling.joint import JointFit, fit_with_bootstrap, identifiable
from scratchlm.scaling.ladder import RUNG_FILE, planned_compute
from scratchlm.scaling.tasks import task_trends

__all__ = ["LAW_FILE", "fit_ladder", "read_rungs"]


def read_rungs(ladder_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    """Each named rung's results (`<ladder_dir>/<rung>/rung.json`), in compute order; a missing one is an error
    naming it. So is the folder of a rung no longer in scaling.rungs: scaling_fit's dep is the whole ladder
    folder, so DVC would hash it into dvc.lock here, and every clone, which has no such folder, would find
    the fit changed."""
    stale = sorted(p.name for p in ladder_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and p.name not in names) if ladder_dir.is_dir() else []
    if stale:
        raise DataFormatError(f"{ladder_dir / stale[0]}: the folder of a rung no longer in scaling.rungs (delete "
                              f"it: scaling_fit's dep is all of {ladder_dir}, and no clone has it)")
    rungs = []
    for name in names:
        path = ladder_dir / name / RUNG_FILE
        try:
            rungs.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise DataFormatError(f"{path}: missing (run the stage scaling@{name} first)") from None
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}: not valid JSON ({error})") from None
    return sorted(rungs, key=lambda r: r["flops"])


def fit_ladder(ladder_dir: Path, names: list[str], recipe: PretrainParams, vocab_size: int,
               params: ScalingFitParams, throughput_file: Path | None = None) -> dict[str, Any]:
    """The law, the size pretrain's budget should buy, the prediction of pretrain's final val loss with its
    interval, what the ladder cost, the tasks.

    A ladder at one tokens-per-parameter ratio is fitted as loss over compute (fit.py) and predicts the
    configured pretrain; one at two or more ratios is fitted as L(N, D) (joint.py), chooses the size for
    the budget (choice.py) and predicts pretrain at its size: the chosen one with model.size from_ladder.
    """
    results = read_rungs(ladder_dir, names)
    rungs = [Rung(r["rung"], r["params"], r["tokens"], r["flops"], r["val_loss"]) for r in results]
    from_ladder = recipe.max_steps is None
    unidentifiable = identifiable(rungs)
    if from_ladder and unidentifiable:
        raise ConfigError(f"pretrain: model.size is from_ladder, but the ladder cannot choose: {unidentifiable}")
    if from_ladder and params.budget_minutes is None and params.budget_flops is None:
        raise ConfigError("scaling_fit.budget_minutes: pretrain's size is from_ladder, so scaling_fit needs its "
                          "budget (budget_minutes or budget_flops)")
    flops_budget = params.budget_flops
    if flops_budget is None and params.budget_minutes is None:
        flops_budget = planned_compute(recipe, vocab_size)["flops"]
    choice: dict[str, Any] = {"why": unidentifiable}
    if unidentifiable is None:
        throughput = read_throughput(throughput_file, recipe) if params.budget_minutes is not None else None
        shapes = [ShapeParams(n_layer=n_layer, n_head=n_head, n_embd=n_embd) for n_layer, n_head, n_embd
                  in dict.fromkeys((r["n_layer"], r["n_head"], r["n_embd"]) for r in results)]  # rungs share shapes
        try:
            joint = fit_with_bootstrap(rungs, params.bootstrap, params.seed)
            choice = choose_size(joint, recipe, vocab_size, params, flops_budget, throughput, shapes)
        except ValueError as error:  # the fit did not converge: fatal only where pretrain needs it
            if from_ladder:
                raise ValueError(f"pretrain: model.size is from_ladder, but L(N, D) could not be fitted ({error})"
                                 ) from None
            choice = {"why": f"L(N, D) could not be fitted ({error})"}
    target = plan_of(choice["chosen"]) if from_ladder else planned_compute(recipe, vocab_size)
    if "chosen" in choice:
        law, fitted, prediction, curve = joint_prediction(joint, rungs, target, params)
    else:
        law, fitted, prediction, curve = compute_prediction(rungs, target, params)
    ladder_flops = sum(r.flops for r in rungs)
    return {
        "law": law,
        "choice": choice,
        "prediction": prediction,
        "pretrain_planned": target,
        "cost": {"ladder_flops": ladder_flops, "share_of_pretrain_flops": ladder_flops / target["flops"],
                 "extrapolation": target["flops"] / max(r.flops for r in rungs)},
        "rungs": [{k: r[k] for k in ("rung", "n_layer", "n_head", "n_embd", "params", "tokens", "steps", "flops",
                                     "val_loss", "val_bpb")} | {"fitted": fit}
                  for r, fit in zip(results, fitted, strict=True)],
        "curve": curve,
        "tasks": task_trends(results),
    }


def plan_of(chosen: dict[str, Any]) -> dict[str, float]:
    """The chosen size as planned_compute writes a plan."""
    return {"params": chosen["params"], "tokens": chosen["tokens"], "flops": chosen["flops"],
            "tokens_per_param": chosen["tokens_per_param"]}


def compute_prediction(rungs: list[Rung], target: dict[str, float], params: ScalingFitParams
                       ) -> tuple[dict[str, Any], list[float], dict[str, Any], list[dict[str, float]]]:
    """Loss over compute (one ratio): the law, each rung's fitted loss, the prediction, the curve with its band."""
    prediction = predict(rungs, target["flops"], params.confidence, params.bootstrap, params.seed)
    law = prediction.law
    return ({"form": law.form, "E": law.E, "A": law.A, "alpha": law.alpha, "C0": law.C0, "rmse": law.rmse,
             "holdout_errors": prediction.holdout_errors},
            [float(law.loss(r.flops)) for r in rungs],
            {"pretrain_val_loss": prediction.loss, "low": prediction.low, "high": prediction.high,
             "confidence": prediction.confidence, "resamples": prediction.resamples,
             "failed_resamples": prediction.failed_resamples},
            [dict(zip(("flops", "loss", "low", "high"), point, strict=True)) for point in prediction.curve])


def joint_prediction(joint: JointFit, rungs: list[Rung], target: dict[str, float], params: ScalingFitParams
                     ) -> tuple[dict[str, Any], list[float], dict[str, Any], list[dict[str, float]]]:
    """L(N, D) (two or more ratios): the law, each rung's fitted loss, the prediction at pretrain's size and
    tokens, and the curve of pretrain's size as its tokens grow (FLOPs on the x axis, as the rungs)."""
    per_token = target["flops"] / target["tokens"]
    tokens = np.geomspace(min(r.tokens for r in rungs), target["tokens"] * 1.5, 40)
    points = [(target["params"], float(d)) for d in [target["tokens"], *tokens]]
    p = joint.predict(points, params.confidence)
    law = {"form": "joint", **p.law.as_dict(), "N0": p.law.N0, "D0": p.law.D0}
    curve = [{"flops": float(d * per_token), "loss": float(p.loss[i]), "low": float(p.low[i]),
              "high": float(p.high[i])} for i, d in enumerate(tokens, start=1)]
    return (law, [float(p.law.loss(r.params, r.tokens)) for r in rungs],
            {"pretrain_val_loss": float(p.loss[0]), "low": float(p.low[0]), "high": float(p.high[0]),
             "confidence": p.confidence, "resamples": p.resamples, "failed_resamples": p.failed_resamples},
            curve)
