"""What pretrain's budget should buy: the size, and the tokens, whose predicted loss is lowest.

The budget is what a user has: training FLOPs, or minutes on this machine kind. Minutes become tokens
through each candidate's measured throughput (`bench/size_throughput.py`: tokens/s of the pretrain
recipe, compiled as pretrain runs, at each candidate shape, and the seconds it spends before its
first step), because small models run at lower MFU and a FLOP is not the same time at every size.
That table is a file in the repository, a dep of scaling_fit: the choice is a function of committed
bytes, so a re-run gives the same choice and the same weights, and a new machine kind is a new
measurement, not a silent drift. Each candidate's loss at its tokens comes from the ladder's L(N, D)
(scratchlm.scaling.joint) with its bootstrap interval; the choice is the lowest point prediction, and
the share of resamples that would have chosen the same size says how firm it is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from scratchlm.config.base import ConfigError
from scratchlm.config.scaling import ScalingFitParams, ShapeParams
from scratchlm.config.training import PretrainParams
from scratchlm.io import DataFormatError
from scratchlm.scaling.chosen import at_shape, shape_of
from scratchlm.scaling.joint import JointFit
from scratchlm.scaling.ladder import model_size, tokens_per_step

#: The recipe keys a throughput table must share with pretrain to say how fast pretrain will run.
THROUGHPUT_RECIPE = ("architecture", "block_size", "batch_size", "grad_accum", "precision", "compile", "optimizer")


def throughput_recipe(params: PretrainParams) -> dict[str, Any]:
    """The settings of `params` that set its speed at a given shape (what the table must match)."""
    flat = {**params.output_params(), **params.model.output_params()}
    return {key: flat[key] for key in THROUGHPUT_RECIPE}


def read_throughput(path: Path, recipe: PretrainParams) -> dict[tuple[int, int, int], dict[str, Any]]:
    """The measured sizes of `path` by shape; a table measured with another recipe is an error naming the key."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        measured, sizes = table["recipe"], table["sizes"]
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing (measure it: python bench/size_throughput.py)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataFormatError(f"{path}: not a throughput table ({type(error).__name__}: {error})") from None
    for key, value in throughput_recipe(recipe).items():
        if measured.get(key) != value:
            raise DataFormatError(f"{path}: measured with {key} {measured.get(key)!r}, pretrain has {value!r} "
                                  "(re-measure: python bench/size_throughput.py)")
    return {shape_of(row): row for row in sizes}


def affordable_tokens(budget: ScalingFitParams, flops_budget: float | None, per_token: float,
                      speed: dict[str, Any] | None, step_tokens: int) -> int:
    """Whole steps' tokens the budget buys at this size: FLOPs over FLOPs per token, or the minutes (less the
    measured time before the first step) times the measured tokens/s."""
    if budget.budget_minutes is not None:
        assert speed is not None
        seconds = budget.budget_minutes * 60 - float(speed["overhead_seconds"])
        tokens = max(0.0, seconds) * float(speed["tokens_per_s"])
    else:
        assert flops_budget is not None
        tokens = flops_budget / per_token
    return math.floor(tokens / step_tokens) * step_tokens


def choose_size(joint: JointFit, recipe: PretrainParams, vocab_size: int, fit: ScalingFitParams,
                flops_budget: float | None, throughput: dict[tuple[int, int, int], dict[str, Any]] | None,
                default_shapes: list[ShapeParams]) -> dict[str, Any]:
    """Every candidate's parameters, affordable tokens and predicted loss with its interval, and the choice."""
    shapes = fit.candidates or default_shapes
    step_tokens = tokens_per_step(recipe)
    rows = []
    for index, shape in enumerate(shapes):
        key = shape_of(shape.output_params())
        speed = None
        if fit.budget_minutes is not None:
            speed = (throughput or {}).get(key)
            if speed is None:
                raise ConfigError(f"scaling_fit.candidates[{index}] ({'x'.join(map(str, key))}): no measured "
                                  "throughput (measure it: python bench/size_throughput.py)")
        sized = at_shape(recipe, key, 2)
        params, per_token = model_size(sized, vocab_size)
        tokens = affordable_tokens(fit, flops_budget, per_token, speed, step_tokens)
        rows.append({"n_layer": key[0], "n_head": key[1], "n_embd": key[2], "params": params,
                     "flops_per_token": per_token, "tokens": tokens, "steps": tokens // step_tokens,
                     "flops": per_token * tokens, "tokens_per_param": tokens / params,
                     **({"tokens_per_s": speed["tokens_per_s"]} if speed else {})})
    usable = [row for row in rows if row["steps"] >= 2]
    if not usable:
        raise ConfigError("scaling_fit: the budget buys fewer than 2 steps at every candidate size")
    prediction = joint.predict([(r["params"], r["tokens"]) for r in usable], fit.confidence)
    for i, row in enumerate(usable):
        row.update(loss=float(prediction.loss[i]), low=float(prediction.low[i]), high=float(prediction.high[i]))
    best = int(np.argmin(prediction.loss))
    firm = float(np.mean(np.argmin(prediction.samples, axis=1) == best))
    return {"chosen": usable[best], "chosen_share_of_resamples": firm, "candidates": usable,
            "budget": {"minutes": fit.budget_minutes, "flops": flops_budget},
            "law": prediction.law.as_dict(), "resamples": prediction.resamples,
            "failed_resamples": prediction.failed_resamples, "confidence": prediction.confidence}
