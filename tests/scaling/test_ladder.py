"""Rungs are the pretrain recipe at another size and a proportional budget."""

from __future__ import annotations

import pytest

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section
from scratchlm.config.training import PretrainParams
from scratchlm.scaling.ladder import model_size, planned_compute, rung_params

RECIPE = {"model": {"n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256, "architecture": "modern"},
          "optimizer": "muon", "lr": 0.008, "min_lr": 0.0008, "max_steps": 600, "warmup_steps": 50,
          "batch_size": 16, "compile": True}
LADDER = {"rungs": {"xs": {"n_layer": 2, "n_head": 2, "n_embd": 48}, "l": {"n_layer": 2, "n_head": 4, "n_embd": 112}}}


def rung(name: str, **shared: object):
    return parse_section("scaling", {**LADDER, **shared}).member(name, {"pretrain": RECIPE})[0]


def test_a_rung_keeps_the_recipe_and_pretrains_ratio_of_tokens_per_parameter() -> None:
    recipe = PretrainParams(**RECIPE)
    planned = planned_compute(recipe, 8192)
    assert planned["tokens"] == 600 * 16 * 256 and planned["flops"] > 6 * planned["params"] * planned["tokens"]
    params = rung_params(recipe, rung("l"), 8192)
    n, _ = model_size(params, 8192)
    tokens = params.max_steps * 16 * 256
    assert tokens / n == pytest.approx(planned["tokens_per_param"], rel=0.02)  # within one step's rounding
    assert (params.model.n_layer, params.model.n_embd, params.model.architecture) == (2, 112, "modern")
    assert (params.optimizer, params.lr, params.batch_size, params.model.block_size) == ("muon", 0.008, 16, 256)
    assert params.warmup_steps == round(50 * params.max_steps / 600) and not params.compile
    assert params.val_every == params.max_steps  # one validation, at the end


def test_a_set_ratio_sets_the_budget() -> None:
    params = rung_params(PretrainParams(**RECIPE), rung("xs", tokens_per_param=20), 8192)
    n, _ = model_size(params, 8192)
    assert params.max_steps * 16 * 256 / n == pytest.approx(20, rel=0.01)


def test_a_rung_of_its_own_ratio_overrides_the_ladders_and_from_ladder_needs_one() -> None:
    ladder = {"rungs": {**LADDER["rungs"], "xs_long": {"n_layer": 2, "n_head": 2, "n_embd": 48,
                                                       "tokens_per_param": 4.0}}}
    own = parse_section("scaling", {**ladder, "tokens_per_param": 1.0}).member("xs_long", {"pretrain": RECIPE})[0]
    params = rung_params(PretrainParams(**RECIPE), own, 8192)
    n, _ = model_size(params, 8192)
    assert params.max_steps * 16 * 256 / n == pytest.approx(4.0, rel=0.02)
    assert own.output_params()["scaling"]["rungs"]["xs_long"]["tokens_per_param"] == 4.0
    chosen = {**RECIPE, "model": {**RECIPE["model"], "size": "from_ladder"}}
    for key in ("n_layer", "n_head", "n_embd"):
        del chosen["model"][key]
    del chosen["max_steps"]
    with pytest.raises(ConfigError, match="scaling.rungs.xs.tokens_per_param: required when pretrain's size is "
                                          "from_ladder"):
        parse_section("scaling", ladder).member("xs", {"pretrain": chosen})
    rung_of_own_ratio = parse_section("scaling", ladder).member("xs_long", {"pretrain": chosen})[0]
    steps = rung_params(rung_of_own_ratio.recipe, rung_of_own_ratio, 8192)
    assert steps.model.size == "fixed" and steps.warmup_steps == round(0.1 * steps.max_steps)


def test_rung_manifest_params_nest_as_params_yaml_does() -> None:
    made = rung("xs").output_params()
    assert made["scaling"]["rungs"] == {"xs": {"n_layer": 2, "n_head": 2, "n_embd": 48}}
    assert made["pretrain"]["lr"] == 0.008 and "l" not in made["scaling"]["rungs"]


@pytest.mark.parametrize(("values", "message"), [
    ({"rungs": {"Big One": {"n_layer": 1, "n_head": 1, "n_embd": 8}}}, "scaling.rungs.Big One"),
    ({"rungs": {"a": {"n_layer": 1, "n_head": 3, "n_embd": 8}}}, "n_embd \\(8\\) must be divisible by n_head \\(3\\)"),
    ({"rungs": {}}, "scaling.rungs"),
    ({**LADDER, "tasks": ["mmlu"]}, "unknown task 'mmlu'"),
])
def test_bad_ladders_are_one_line_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_section("scaling", values)


def test_an_unknown_rung_is_named() -> None:
    with pytest.raises(ConfigError, match="scaling.rungs: no rung 'xxl' \\(has: xs, l\\)"):
        rung("xxl")
