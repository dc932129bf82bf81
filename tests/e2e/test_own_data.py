"""Your own text corpus, as the README's recipe has it: a folder of `.txt` files (the same file names in
different subfolders, a train member only) replaces the default pretraining sources, and the whole DAG
runs, validates, pretrains, evaluates and audits with nothing else in params.yaml changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from repo_shell import sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def write_corpus(root: Path, texts: list[str]) -> None:
    """Half of the texts in `a/`, half in `b/`, named 000.txt, 001.txt, … in each: every name twice."""
    half = len(texts) // 2
    for folder, chunk in (("a", texts[:half]), ("b", texts[half:])):
        (root / folder).mkdir(parents=True)
        for index, text in enumerate(chunk):
            (root / folder / f"{index:03d}.txt").write_text(text, encoding="utf-8")


def test_a_folder_of_text_files_pretrains_and_evaluates_with_only_its_source_block(
        debug_dag: tuple[Path, Path], tmp_path: Path) -> None:
    root = Path(shutil.copytree(debug_dag[1], tmp_path / "repo", symlinks=True))
    texts = [t for p in sorted((root / "data/clean").rglob("*.parquet")) for t in pq.read_table(p)["text"].to_pylist()]
    write_corpus(root / "speeches", texts)
    params = yaml.safe_load((root / "params.yaml").read_text())
    sources = params["download"]["sources"]
    for name in ("wikitext2", "wiki_summaries"):  # the recipe: the pretraining sources out, one source in
        del sources[name]
    sources["speeches"] = {"kind": "local", "format": "text", "role": "pretrain", "licence": "own",
                           "members": {"train": "speeches/**/*.txt"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    sh(root, "dvc", "repro")

    raw_ids = {i for p in (root / "data/raw/speeches").glob("*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    assert {"speeches/train/a/000.txt", "speeches/train/b/000.txt"} <= raw_ids
    assert len(raw_ids) == len(texts)
    validate = json.loads((root / "reports/metrics/validate.json").read_text())
    assert validate["failed_critical"] == 0
    evaluate = json.loads((root / "reports/metrics/evaluate.json").read_text())
    assert set(evaluate["language_modeling"]) == {"speeches_val"}, "no test member: no test split to score"
    assert sh(root, "scratchlm", "audit", check=False).returncode == 0
