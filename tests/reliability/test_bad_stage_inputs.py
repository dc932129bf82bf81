"""Inputs that are well formed but wrong for the stage that reads them, on a copy of the debug DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dag_tools import fresh_tracking
from stage_cli import error_line, run_stage, set_params, stage_argv

from scratchlm.io import tree_sha256

pytestmark = pytest.mark.slow


def run(dag: Path, stage: str):
    return run_stage(dag, *stage_argv(stage, dag), env=fresh_tracking(dag))


def test_max_length_above_the_pretrained_block_size_is_refused(dag: Path) -> None:
    block = json.loads((dag / "models" / "pretrain" / "config.json").read_text())["block_size"]
    set_params(dag, {"finetune_classifier": {"max_length": block * 2}})
    line = error_line(run(dag, "finetune_classifier"))
    assert f"finetune_classifier.max_length {block * 2} exceeds the model's block_size {block}" in line, line


def test_label_outside_the_label_set_names_the_record(dag: Path) -> None:
    set_params(dag, {"finetune_classifier": {"labels": ["ham", "junk"], "positive_label": "junk"}})
    line = error_line(run(dag, "finetune_classifier"))
    assert "data/raw/classification/sms_spam" in line and "label 'spam' is not one of ['ham', 'junk']" in line, line


def test_benchmark_gold_index_out_of_range_stops_evaluate_naming_the_item(dag: Path) -> None:
    path = dag / "data" / "raw" / "benchmark" / "benchmarks" / "piqa.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    items[1]["gold"] = 5
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    before = tree_sha256(dag / "reports" / "evaluation")
    line = error_line(run(dag, "evaluate"))
    assert f"item {items[1]['id']}: gold 5 is not an index" in line, line
    assert tree_sha256(dag / "reports" / "evaluation") == before
