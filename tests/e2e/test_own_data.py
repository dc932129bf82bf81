"""Your own data, as the README's recipes have it, through the real DAG (debug profile) and its audit: a
folder of `.txt` files (the same file names in different subfolders, a train member only) replaces the
default pretraining sources with nothing else in params.yaml changed; a three-class labelled set with
other label names replaces the SMS set, and a preference set of one's own replaces the built pairs, each
re-running only the stages that read it."""

from __future__ import annotations

import json
import re
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

    raw_ids = {i for p in (root / "data/raw/pretrain/speeches").glob("*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    assert {"speeches/train/a/000.txt", "speeches/train/b/000.txt"} <= raw_ids
    assert len(raw_ids) == len(texts)
    validate = json.loads((root / "reports/metrics/validate.json").read_text())
    assert validate["failed_critical"] == 0
    evaluate = json.loads((root / "reports/metrics/evaluate.json").read_text())
    assert set(evaluate["language_modeling"]) == {"speeches_val"}, "no test member: no test split to score"
    assert sh(root, "scratchlm", "audit", check=False).returncode == 0


WORDS = {"praise": ["great", "lovely", "superb", "moving", "brilliant", "charming"],
         "pan": ["dull", "tedious", "awful", "clumsy", "boring", "flat"],
         "shrug": ["average", "fine", "passable", "ordinary", "decent", "okay"]}


PAIR_WORDS = ("apple", "river", "stone", "cloud", "green", "music", "light", "sugar", "paper", "dream", "north", "tiger",
              "ocean", "bread", "glass", "honey", "earth", "piano", "smile", "storm")


def test_own_labelled_set_and_preference_pairs_train_align_and_evaluate(
        debug_dag: tuple[Path, Path], tmp_path: Path) -> None:
    """The README's recipes for one's own labelled set (its source block, `positive_label: null` for more than
    two classes, no share bounds for labels the set does not have) and one's own preference pairs (one source
    block), in one run: only the stages that read them re-run, and the audit traces both models to their bytes."""
    root = Path(shutil.copytree(debug_dag[1], tmp_path / "repo", symlinks=True))
    rows = [{"review": f"the film was {' '.join(WORDS[label][(i + k) % 6] for k in range(5))}", "verdict": label}
            for i in range(60) for label in WORDS]
    (root / "reviews.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["download"]["sources"]["sms_spam"]
    params["download"]["sources"]["reviews"] = {
        "kind": "local", "format": "labelled", "role": "classification", "licence": "own",
        "text_field": "review", "label_field": "verdict", "members": {"data": "reviews.jsonl"}}
    params["finetune_classifier"]["positive_label"] = None
    params["validate"]["label_shares"] = {}
    pairs = [{"prompt": f"Is {word} a good word?", "chosen": "Yes, it is.", "rejected": f"{word} {word} {word}"}
             for word in PAIR_WORDS]
    (root / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    params["download"]["sources"]["my_pairs"] = {"kind": "local", "format": "preference_jsonl",
                                                  "role": "preference", "licence": "own",
                                                  "members": {"data": "pairs.jsonl"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    ran = set(re.findall(r"Running stage '(\w+)'", sh(root, "dvc", "repro").stdout))

    # dependencies per role: new labelled and preference sets re-run what reads them, never the tokenizer or the
    # LM, nor the instruction model
    assert ran == {"download", "validate", "finetune_classifier", "align", "evaluate", "report"}, ran
    tuned = json.loads((root / "reports/metrics/finetune_classifier.json").read_text())
    assert set(tuned["test"]["per_class"]) == {"pan", "praise", "shrug"}
    assert json.loads((root / "models/classifier/config.json").read_text())["head"]["labels"] == [
        "pan", "praise", "shrug"]
    scored = json.loads((root / "reports/metrics/evaluate.json").read_text())["classifier"]
    assert {"majority", "tfidf_logreg"} <= set(scored["baselines"]) and "macro_f1" in scored
    assert sum(c["support"] for c in scored["per_class"].values()) == scored["items"] == tuned["split_sizes"]["test"]
    assert (root / "reports/plots/classifier_confusion.csv").read_text().startswith("actual,predicted\n")
    card = (root / "reports/model_card/model_card.md").read_text()
    assert "classes pan, praise, shrug" in card
    aligned = json.loads((root / "reports/metrics/align.json").read_text())
    assert aligned["pair_source"] == "preference sources"
    assert aligned["pairs"] == {"train": 18, "heldout": 2}  # align.heldout 0.1, by a hash of the ids
    written = [json.loads(line) for line in (root / "models/aligned/pairs.jsonl").read_text().splitlines()]
    assert {p["id"] for p in written} == {f"my_pairs/{n:06d}" for n in range(1, 21)}
    assert "data/raw/preference" in json.loads((root / "models/aligned/manifest.json").read_text())["inputs"]
    assert "read from the preference sources" in card
    assert sh(root, "scratchlm", "audit", check=False).returncode == 0  # the card's lineage: both models

