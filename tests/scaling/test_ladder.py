"""Rungs are the pretrain recipe at another size and a proportional budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section
from scratchlm.config.scaling import rung_recipe_keys
from scratchlm.config.training import PretrainParams
from scratchlm.scaling.ladder import model_size, rung_params

RECIPE = {"model": {"n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256, "architecture": "modern"},
          "optimizer": "muon", "lr": 0.008, "min_lr": 0.0008, "max_steps": 600, "warmup_steps": 50,
          "batch_size": 16, "compile": True}
LADDER = {"rungs": {"xs": {"n_layer": 2, "n_head": 2, "n_embd": 48}, "l": {"n_layer": 2, "n_head": 4, "n_embd": 112}}}


def rung(name: str, **shared: object):
    return parse_section("scaling", {**LADDER, "tokens_per_param": 0.25, **shared}).member(name, {"pretrain": RECIPE})[0]


def test_a_rung_keeps_the_recipe_at_the_ladders_ratio_of_tokens_per_parameter() -> None:
    params = rung_params(PretrainParams(**RECIPE), rung("l", tokens_per_param=0.5), 8192)
    n, _ = model_size(params, 8192)
    tokens = params.max_steps * 16 * 256
    assert tokens / n == pytest.approx(0.5, rel=0.02)  # within one step's rounding
    assert (params.model.n_layer, params.model.n_embd, params.model.architecture) == (2, 112, "modern")
    assert (params.optimizer, params.lr, params.batch_size, params.model.block_size) == ("muon", 0.008, 16, 256)
    assert params.warmup_steps == round(0.1 * params.max_steps) and not params.compile  # its own, not pretrain's
    assert params.val_every == params.max_steps  # one validation, at the end


def test_a_rung_does_not_depend_on_pretrains_size_or_steps() -> None:
    """What the ladder chooses (pretrain's shape, steps) is not its input: the same rung, whatever they are."""
    other = {**RECIPE, "max_steps": 60, "warmup_steps": 3, "val_every": 7,
             "model": {**RECIPE["model"], "n_layer": 8, "n_embd": 512}}
    ladder = {**LADDER, "tokens_per_param": 0.5}
    one, two = (parse_section("scaling", ladder).member("l", {"pretrain": recipe})[0] for recipe in (RECIPE, other))
    assert one.output_params() == two.output_params()
    assert rung_params(one.recipe, one, 8192) == rung_params(two.recipe, two, 8192)
    assert "max_steps" not in one.output_params()["pretrain"] and "n_layer" not in one.output_params()["pretrain"]["model"]


def test_dvc_yaml_lists_every_recipe_key_as_the_rungs_params(repo_root: Path) -> None:
    """The rung's params in dvc.yaml are pretrain's keys less NOT_RUNG_RECIPE, so a changed recipe key re-runs the
    ladder and a changed size does not; params.yaml holds each of them (else DVC could not track it)."""
    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["scaling"]["do"]
    listed = [key for key in stage["params"] if key.startswith("pretrain")]
    assert listed == rung_recipe_keys()
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    for key in listed:
        value = raw
        for part in key.split("."):
            assert isinstance(value, dict) and part in value, f"params.yaml has no {key}"
            value = value[part]


def test_a_set_ratio_sets_the_budget() -> None:
    params = rung_params(PretrainParams(**RECIPE), rung("xs", tokens_per_param=20), 8192)
    n, _ = model_size(params, 8192)
    assert params.max_steps * 16 * 256 / n == pytest.approx(20, rel=0.01)


def test_a_rung_of_its_own_ratio_overrides_the_ladders() -> None:
    ladder = {"rungs": {**LADDER["rungs"], "xs_long": {"n_layer": 2, "n_head": 2, "n_embd": 48,
                                                       "tokens_per_param": 4.0}}}
    own = parse_section("scaling", {**ladder, "tokens_per_param": 1.0}).member("xs_long", {"pretrain": RECIPE})[0]
    params = rung_params(PretrainParams(**RECIPE), own, 8192)
    n, _ = model_size(params, 8192)
    assert params.max_steps * 16 * 256 / n == pytest.approx(4.0, rel=0.02)
    assert own.output_params()["scaling"]["rungs"]["xs_long"]["tokens_per_param"] == 4.0
    with pytest.raises(ConfigError, match="scaling.tokens_per_param"):
        parse_section("scaling", ladder)  # the ladder's own ratio is required: pretrain lends it none


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
        parse_section("scaling", {"tokens_per_param": 0.25, **values})


def test_an_unknown_rung_is_named() -> None:
    with pytest.raises(ConfigError, match="scaling.rungs: no rung 'xxl' \\(has: xs, l\\)"):
        rung("xxl")
