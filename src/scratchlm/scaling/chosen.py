"""The size scaling_fit chose, as pretrain reads it: choice.json's bytes and a recipe at that shape.

Kept apart from the choosing (scratchlm.scaling.choice, which needs the fit, the law and the ladder) so
that pretrain's code deps are only what it runs: an edit to the fitting code re-runs scaling_fit, and
pretrain only if the choice's bytes change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scratchlm.config.training import SHAPE_KEYS, PretrainParams
from scratchlm.io import DataFormatError


def shape_of(shape: Mapping[str, Any]) -> tuple[int, int, int]:
    """(n_layer, n_head, n_embd) of a mapping that holds them (a candidate, a choice, a table row)."""
    return tuple(int(shape[key]) for key in SHAPE_KEYS)  # type: ignore[return-value]


def at_shape(recipe: PretrainParams, shape: tuple[int, int, int], steps: int) -> PretrainParams:
    """`recipe` at a fixed shape and step count (warmup kept below the steps)."""
    model = {**recipe.model.output_params(), "size": "fixed", **dict(zip(SHAPE_KEYS, shape, strict=True))}
    return PretrainParams(**{**recipe.model_dump(), "model": model, "max_steps": steps,
                             "warmup_steps": min(recipe.warmup_steps, steps - 1)})


def decision(law: dict[str, Any], from_ladder: bool) -> dict[str, Any]:
    """What choice.json holds: the chosen shape and steps for a from_ladder pretrain; for a fixed one, bytes
    that do not depend on the ladder (so DVC re-runs it for nothing)."""
    if not from_ladder:
        return {"chosen": None, "why": "pretrain.model.size is fixed"}
    chosen = law["choice"]["chosen"]
    return {"chosen": {"n_layer": chosen["n_layer"], "n_head": chosen["n_head"], "n_embd": chosen["n_embd"],
                       "max_steps": chosen["steps"]}}


def read_choice(path: Path) -> dict[str, Any]:
    """scaling_fit's choice.json; missing, unreadable or without a choice is an error naming it."""
    try:
        made = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing (run the stage scaling_fit first)") from None
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not valid JSON ({error})") from None
    chosen = made.get("chosen") if isinstance(made, dict) else None
    if not isinstance(chosen, dict) or set(chosen) != {*SHAPE_KEYS, "max_steps"}:
        why = made.get("why", "no chosen shape and steps") if isinstance(made, dict) else "not an object"
        raise DataFormatError(f"{path}: no size chosen ({why}; run scaling_fit with model.size: from_ladder)")
    for key, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataFormatError(f"{path}: chosen.{key} is {value!r}, not a positive whole number")
    return chosen


def apply_choice(params: PretrainParams, chosen: dict[str, Any]) -> PretrainParams:
    """`params` (model.size from_ladder) at the shape and steps scaling_fit chose (`read_choice`)."""
    return at_shape(params, shape_of(chosen), int(chosen["max_steps"]))
