"""The size the budget buys: tokens per candidate from FLOPs or measured minutes, the lowest predicted loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.config.base import ConfigError
from scratchlm.config.scaling import ScalingFitParams, ShapeParams
from scratchlm.config.training import PretrainParams
from scratchlm.io import DataFormatError
from scratchlm.scaling.choice import choose_size, read_throughput, throughput_recipe
from scratchlm.scaling.chosen import apply_choice, decision, read_choice
from scratchlm.scaling.fit import Rung
from scratchlm.scaling.joint import fit_with_bootstrap
from scratchlm.scaling.ladder import model_size

VOCAB = 512
RECIPE = PretrainParams(model={"size": "from_ladder", "block_size": 32, "architecture": "modern"}, batch_size=4,
                        warmup_steps=5)
SHAPES = [(1, 2, 16), (2, 2, 32), (2, 2, 64), (4, 4, 128)]


def sized(shape: tuple[int, int, int]) -> tuple[int, float]:
    return model_size(PretrainParams(model={"n_layer": shape[0], "n_head": shape[1], "n_embd": shape[2],
                                            "block_size": 32, "architecture": "modern"}, max_steps=2, warmup_steps=1), VOCAB)


def ladder() -> list[Rung]:
    """Rungs at two ratios from a known L(N, D) whose data term dominates: more tokens beat more parameters."""
    rungs = []
    for shape in SHAPES[:3]:
        n, per_token = sized(shape)
        for ratio in (0.5, 2.0):
            d = int(n * ratio)
            rungs.append(Rung(f"{shape}-{ratio}", n, d, per_token * d, 1.0 + 30 / n ** 0.3 + 3000 / d ** 0.45))
    return rungs


def test_a_flops_budget_buys_the_size_with_the_lowest_predicted_loss(tmp_path: Path) -> None:
    fit = ScalingFitParams(candidates=[ShapeParams(n_layer=s[0], n_head=s[1], n_embd=s[2]) for s in SHAPES],
                           bootstrap=100)
    budget = 5e11
    choice = choose_size(fit_with_bootstrap(ladder(), 100), RECIPE, VOCAB, fit, budget, None, [])
    losses = [row["loss"] for row in choice["candidates"]]
    assert choice["chosen"]["loss"] == min(losses)
    for row in choice["candidates"]:
        assert row["tokens"] % (4 * 32) == 0 and row["flops"] <= budget  # whole steps within the budget
        assert row["low"] <= row["loss"] <= row["high"]
    assert 0 < choice["chosen_share_of_resamples"] <= 1
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(decision({"choice": choice}, from_ladder=True)))
    chosen = apply_choice(RECIPE, read_choice(path))
    assert (chosen.model.n_layer, chosen.model.n_head, chosen.model.n_embd) == tuple(
        choice["chosen"][k] for k in ("n_layer", "n_head", "n_embd"))
    assert chosen.max_steps == choice["chosen"]["steps"] and chosen.model.size == "fixed"
    assert chosen.warmup_steps == 5 and chosen.lr == RECIPE.lr  # the rest is the recipe


def test_a_minutes_budget_uses_each_size_measured_speed(tmp_path: Path) -> None:
    """The same minutes buy each size its own tokens: minutes less the overhead, times its tokens/s."""
    table = {"recipe": throughput_recipe(RECIPE), "sizes": [
        {"n_layer": s[0], "n_head": s[1], "n_embd": s[2], "tokens_per_s": 1000.0 * (4 - i), "overhead_seconds": 6.0}
        for i, s in enumerate(SHAPES)]}
    path = tmp_path / "size_throughput.json"
    path.write_text(json.dumps(table))
    fit = ScalingFitParams(candidates=[ShapeParams(n_layer=s[0], n_head=s[1], n_embd=s[2]) for s in SHAPES],
                           budget_minutes=1.0, bootstrap=100)
    choice = choose_size(fit_with_bootstrap(ladder(), 100), RECIPE, VOCAB, fit, None, read_throughput(path, RECIPE), [])
    for i, row in enumerate(choice["candidates"]):
        assert row["tokens"] == (54 * 1000 * (4 - i)) // 128 * 128
    fit.candidates.append(ShapeParams(n_layer=3, n_head=2, n_embd=32))
    with pytest.raises(ConfigError, match=r"scaling_fit.candidates\[4\] \(3x2x32\): no measured throughput"):
        choose_size(fit_with_bootstrap(ladder(), 100), RECIPE, VOCAB, fit, None, read_throughput(path, RECIPE), [])


def test_a_table_measured_with_another_recipe_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "size_throughput.json"
    path.write_text(json.dumps({"recipe": {**throughput_recipe(RECIPE), "compile": not RECIPE.compile}, "sizes": []}))
    with pytest.raises(DataFormatError, match=f"measured with compile {not RECIPE.compile}, pretrain has "
                                              f"{RECIPE.compile}"):
        read_throughput(path, RECIPE)
    with pytest.raises(DataFormatError, match="missing"):
        read_throughput(tmp_path / "absent.json", RECIPE)


def test_from_ladder_leaves_shape_and_steps_to_the_ladder() -> None:
    assert RECIPE.model.n_layer is None and RECIPE.max_steps is None
    with pytest.raises(ValueError, match="n_layer: chosen by the ladder"):
        PretrainParams(model={"size": "from_ladder", "n_layer": 2})
    with pytest.raises(ValueError, match="max_steps: chosen by the ladder"):
        PretrainParams(model={"size": "from_ladder"}, max_steps=100)
    with pytest.raises(ValueError, match="apply the ladder's choice first"):
        RECIPE.model.gpt_fields()
