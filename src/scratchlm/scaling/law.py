"""The `scaling_fit` stage's work: the rungs' results in, the fitted law and pretrain's predicted loss out.

The prediction is written before `pretrain` runs (the stage does not depend on it): what the configured
pretrain run will cost is computed from its params (parameters from the model on the meta device, tokens
from steps × batch × context), and the law is asked for the loss at that compute. The report later sets
the measured loss beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scratchlm.config.scaling import ScalingFitParams
from scratchlm.config.training import PretrainParams
from scratchlm.io import DataFormatError
from scratchlm.scaling.fit import Rung, fit_chinchilla, predict
from scratchlm.scaling.ladder import RUNG_FILE, planned_compute
from scratchlm.scaling.tasks import task_trends

LAW_FILE = "law.json"


def read_rungs(ladder_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    """Each named rung's results (`<ladder_dir>/<rung>/rung.json`), in compute order; a missing one is an error
    naming it (a folder of a rung no longer in scaling.rungs is ignored)."""
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
               params: ScalingFitParams) -> dict[str, Any]:
    """The law, the prediction of pretrain's final val loss with its interval, what the ladder cost, the tasks."""
    results = read_rungs(ladder_dir, names)
    rungs = [Rung(r["rung"], r["params"], r["tokens"], r["flops"], r["val_loss"]) for r in results]
    target = planned_compute(recipe, vocab_size)
    prediction = predict(rungs, target["flops"], params.confidence, params.bootstrap, params.seed)
    law = prediction.law
    ladder_flops = sum(r.flops for r in rungs)
    return {
        "law": {"form": law.form, "E": law.E, "A": law.A, "alpha": law.alpha, "C0": law.C0, "rmse": law.rmse,
                "holdout_errors": prediction.holdout_errors},
        "chinchilla": fit_chinchilla(rungs) or "not identifiable: every rung has the same tokens per parameter",
        "prediction": {"pretrain_val_loss": prediction.loss, "low": prediction.low, "high": prediction.high,
                       "confidence": prediction.confidence, "resamples": prediction.resamples,
                       "failed_resamples": prediction.failed_resamples},
        "pretrain_planned": target,
        "cost": {"ladder_flops": ladder_flops, "share_of_pretrain_flops": ladder_flops / target["flops"],
                 "extrapolation": target["flops"] / max(r.flops for r in rungs)},
        "rungs": [{k: r[k] for k in ("rung", "n_layer", "n_head", "n_embd", "params", "tokens", "steps", "flops",
                                     "val_loss", "val_bpb")} | {"fitted": float(law.loss(r["flops"]))}
                  for r in results],
        "curve": [dict(zip(("flops", "loss", "low", "high"), point, strict=True)) for point in prediction.curve],
        "tasks": task_trends(results),
    }
