from pathlib import Path

import pytest
import yaml

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section
from scratchlm.stages import SECTION_PATHS


def test_every_section_of_the_default_params_validates(repo_root: Path) -> None:
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, values in params.items():
        assert name in SECTION_PATHS, f"params.yaml has a section without a model: {name}"
        parse_section(name, values)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("clean", {"min_words": -1}, "clean.min_words: must be ≥ 0"),
        ("pretrain", {"model": {"size": "from_ladder", "n_embd": 96}},
         "pretrain.model: n_embd: chosen by the ladder with size: from_ladder"),
        ("pretrain", {"model": {"size": "from_ladder"}, "max_steps": 10},
         "pretrain: max_steps: chosen by the ladder with model.size: from_ladder"),
        ("pretrain", {"model": {"n_head": None}}, "pretrain.model: n_head: required with size: fixed"),
        ("pretrain", {"max_steps": None}, "pretrain: max_steps: required with model.size: fixed"),
        ("scaling_fit", {"budget_minutes": 5, "budget_flops": 1e15},
         "scaling_fit: budget_flops: set budget_minutes or budget_flops, not both"),
        ("clean", {"min_wrods": 3}, "clean.min_wrods: unknown key"),
        ("clean", {"num_proc": "two"}, "clean.num_proc: Input should be a valid integer"),
        ("clean", {"min_words": 50, "max_words": 10}, "clean: max_words must be ≥ min_words"),
        ("dedup", {"val_fraction": 1.5}, "dedup.val_fraction: must be < 1"),
        ("tracking", {"connect_timeout_s": 0}, "tracking.connect_timeout_s: must be > 0"),
        ("nonsense", {}, "nonsense: unknown params section"),
        ("finetune_classifier", {"labels": ["a", "b", "spam"]}, "finetune_classifier: positive_label 'spam' is for two "
                                                           "classes; with 3 labels set it to null"),
        ("finetune_classifier", {"labels": ["a", "b"]}, "finetune_classifier: positive_label 'spam' is not one of"),
        ("finetune_classifier", {"labels": ["a", "a"], "positive_label": None}, "finetune_classifier: labels ['a', "
                                                                                 "'a'] repeat a label"),
        ("validate", {"label_shares": {"pos": [0.6, 0.4]}}, "validate.label_shares: label_shares.pos: [0.6, 0.4] "
                                                            "must be 0 <= min <= max <= 1"),
        ("download", {"sources": {"r": {"kind": "local", "format": "labelled", "role": "pretrain",
                                        "members": {"train": "r.jsonl"}}}},
         "download.sources.r: format 'labelled' is a classification set: role must be 'classification'"),
        ("download", {"sources": {"w": {"kind": "local", "format": "wiki_qa", "role": "pretrain",
                                        "members": {"data": "w.json"}}}},
         "download.sources.w: format 'wiki_qa' is an instruction set: role must be 'instruction', not 'pretrain'"),
        ("download", {"sources": {"p": {"kind": "local", "format": "preference_jsonl", "role": "instruction",
                                        "members": {"data": "p.jsonl"}}}},
         "download.sources.p: format 'preference_jsonl' is a preference set: role must be 'preference', not "
         "'instruction'"),
    ],
)
def test_errors_are_one_line_and_name_the_key(section: str, values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_section(section, values)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_source_spec_requires_the_fields_of_its_kind() -> None:
    sources = {"s": {"kind": "wheel", "format": "text", "role": "pretrain", "members": {"train": "a"}}}
    with pytest.raises(ConfigError, match=r"download.sources.s: package is required for kind 'wheel'"):
        parse_section("download", {"sources": sources})
    sources = {"s": {"kind": "url", "url": "ftp://x", "sha256": "0" * 64, "format": "text", "role": "pretrain"}}
    with pytest.raises(ConfigError, match="url must start with http"):
        parse_section("download", {"sources": sources})
    sources = {"s": {"kind": "wheel", "package": "p", "version": "1", "sha256": "xyz", "format": "text",
                     "role": "pretrain", "members": {"train": "a"}}}
    with pytest.raises(ConfigError, match=r"download.sources.s.sha256"):
        parse_section("download", {"sources": sources})


@pytest.mark.parametrize("section", ["finetune_classifier", "finetune_instruct"])
def test_split_ratios_are_cut_in_train_val_test_order_whatever_the_key_order(section: str) -> None:
    """A manifest records params with sorted keys; a re-run from it must cut the same splits."""
    written = parse_section(section, {"split": {"train": 0.6, "val": 0.15, "test": 0.25}})
    from_manifest = parse_section(section, {"split": {"test": 0.25, "train": 0.6, "val": 0.15}})
    assert list(from_manifest.split.items()) == list(written.split.items()) == [
        ("train", 0.6), ("val", 0.15), ("test", 0.25)]
    with pytest.raises(ConfigError, match=rf"{section}.split: .*sum to 1"):
        parse_section(section, {"split": {"train": 0.6, "val": 0.1, "test": 0.1}})


def test_params_files_refuse_duplicate_keys_but_take_merge_keys(tmp_path) -> None:
    from scratchlm.config.base import ConfigError
    from scratchlm.config.loader import read_params_file

    path = tmp_path / "params.yaml"
    path.write_text("base: &b {min_words: 3}\nclean:\n  <<: *b\n  max_words: 9\n")
    assert read_params_file(path)["clean"] == {"min_words": 3, "max_words": 9}
    path.write_text("clean: {min_words: 3, min_words: 4}\n")
    with pytest.raises(ConfigError, match=r"params.yaml:1: duplicate key 'min_words' \(first at line 1\)"):
        read_params_file(path)
