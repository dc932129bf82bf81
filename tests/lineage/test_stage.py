"""The shared stage wiring, through real stage scripts run as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stage_cli import REPO, run_stage


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_missing_input_is_one_line_and_nothing_is_written(workdir: Path) -> None:
    result = run_stage(workdir, "pipelines.clean", "data/raw", "data/clean")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: clean: input data/raw does not exist (run the stage that produces it first)")
    assert "Traceback" not in result.stderr
    assert not (workdir / "data").exists()


def test_empty_pretraining_corpus_is_refused(workdir: Path) -> None:
    (workdir / "data" / "raw" / "pretrain").mkdir(parents=True)  # a role folder without sources
    (workdir / "data" / "raw" / "pretrain" / "sources.json").write_text('{"role": "pretrain", "sources": []}')
    result = run_stage(workdir, "pipelines.clean", "data/raw/pretrain", "data/clean")
    assert result.returncode == 1 and "no document shards of a pretraining source" in result.stderr
    assert "Traceback" not in result.stderr and not (workdir / "data" / "clean").exists()


def test_empty_train_split_stops_the_tokenizer(workdir: Path) -> None:
    from scratchlm.io import make_document, write_sharded

    for split in ("train", "val"):
        docs = [] if split == "train" else [make_document("v", "some text", "s", {"split": "val"})]
        write_sharded(workdir / "data" / "dedup" / split, "part", iter(docs), shard_docs=10)
    (workdir / "reports" / "data_validation").mkdir(parents=True)
    (workdir / "reports" / "data_validation" / "corpus.json").write_text("{}")
    result = run_stage(workdir, "pipelines.tokenizer", "data/dedup", "models/tokenizer")
    assert result.returncode == 1 and "no documents in the train split" in result.stderr
    assert not (workdir / "models" / "tokenizer").exists()


def test_bad_params_file_is_one_line(workdir: Path) -> None:
    (workdir / "params.yaml").write_text("clean: [unclosed\n")
    result = run_stage(workdir, "pipelines.clean", "data/raw", "data/clean")
    assert result.returncode == 1 and "params.yaml: cannot read params" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_seconds_counts_from_the_process_start() -> None:
    """A stage's recorded start-up (`startup_seconds`) is measured from the interpreter's start, not from an import."""
    code = "import time; time.sleep(0.6); from scratchlm.lineage.stage import process_seconds; print(process_seconds())"
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.6 <= seconds < 10
