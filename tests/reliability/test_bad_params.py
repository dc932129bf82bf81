"""Bad params, through the real stage scripts: one line naming the key, before any work starts.

No stage here has its inputs: the params error must come first, before the missing-input check,
before MLflow is touched (no database appears) and before any output folder exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stage_cli import error_line, run_stage, set_params, stage_argv

CASES = [
    ("unknown key", "clean", {"min_wrods": 3}, "clean.min_wrods: unknown key"),
    ("wrong type", "pretrain", {"batch_size": "sixteen"}, "pretrain.batch_size: Input should be a valid integer"),
    ("negative lr", "pretrain", {"lr": -0.001}, "pretrain.lr: must be > 0"),
    ("block_size above the maximum", "pretrain", {"model": {"block_size": 1 << 20}},
     "pretrain.model.block_size: must be ≤ 65536"),
    ("vocab below bytes + specials", "tokenizer", {"vocab_size": 200}, "tokenizer: vocab_size must be ≥ 258"),
    ("n_embd not divisible by n_head", "pretrain", {"model": {"size": "fixed", "n_embd": 100, "n_head": 3}},
     "pretrain.model: n_embd (100) must be divisible by n_head (3)"),
    ("a shape set by hand for the ladder to choose", "pretrain", {"model": {"n_embd": 96}},
     "pretrain.model: n_embd: chosen by the ladder with size: from_ladder (remove it, or set size: fixed)"),
    ("split not summing to 1", "finetune_classifier", {"split": {"train": 0.7, "val": 0.2, "test": 0.2}},
     "finetune_classifier.split: split ratios must be > 0 and sum to 1 (they sum to 1.1)"),
    ("split with an unknown part", "finetune_instruct", {"split": {"dev": 0.05}},
     "finetune_instruct.split: split must have exactly the keys train, val, test"),
    ("max_new_tokens ≥ max_length", "finetune_instruct", {"max_length": 32, "max_new_tokens": 40},
     "finetune_instruct: max_new_tokens must be < max_length"),
    ("item cap of zero", "evaluate", {"max_items": 0}, "evaluate.max_items: must be ≥ 1"),
    ("NaN split ratio", "finetune_classifier", {"split": {"train": float("nan"), "val": 0.5, "test": 0.5}},
     "finetune_classifier.split.train: must be a finite number (NaN and infinity are refused)"),
    ("infinite lr", "pretrain", {"lr": float("inf")}, "pretrain.lr: must be a finite number"),
    ("NaN deep in a mapping", "clean", {"max_top_ngram_ratio": {2: float("nan")}},
     "clean.max_top_ngram_ratio.2: must be a finite number"),
]


@pytest.mark.parametrize(("case", "stage", "override", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_param_is_one_line_naming_the_key_before_any_work(tmp_path: Path, case: str, stage: str,
                                                               override: dict, message: str) -> None:
    set_params(tmp_path, {stage: override})
    line = error_line(run_stage(tmp_path, *stage_argv(stage)))
    assert line.startswith(f"error: {stage}: {message}"), line
    assert "ConfigError" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no output, no MLflow database
