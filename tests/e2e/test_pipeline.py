"""The real `dvc repro` of the whole DAG on the debug profile, in a throw-away copy of the repo (conftest.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from repo_shell import sh

from scratchlm.lineage.manifest import manifest_sha256, part_sha256
from scratchlm.lineage.runrecord import is_timing
from scratchlm.lineage.tracking import flatten_metrics
from scratchlm.reporting.model_card import outputs_digest

DATA_STAGES = ["download", "clean", "dedup", "validate"]
RUNGS = ("xs", "s", "m", "l", "xs_long", "s_long")  # the debug profile: l added, the two xxs removed
STAGES = [*DATA_STAGES, "tokenizer", "tokenize", "pretrain", "finetune_classifier", "finetune_instruct", "align",
          "evaluate", "report", *(f"scaling@{rung}" for rung in RUNGS), "scaling_fit"]
TASKS = ["hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "sciq", "lambada"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_outputs_manifests_and_metrics(repo: Path) -> None:
    for stage, out in [("download", "data/raw"), ("clean", "data/clean"), ("dedup", "data/dedup"),
                       ("validate", "reports/data_validation"), ("tokenizer", "models/tokenizer"),
                       ("tokenize", "data/tokens"), ("pretrain", "models/pretrain"),
                       ("finetune_classifier", "models/classifier"), ("finetune_instruct", "models/instruct"),
                       ("align", "models/aligned"), ("evaluate", "reports/evaluation"), ("report", "reports/model_card")]:
        manifest = json.loads((repo / out / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["code"] and manifest["outputs"], f"{stage}: {manifest}"
        assert f"reports/metrics/{stage}.json" in manifest["other_outputs"]
        record = json.loads((repo / "reports" / "runs" / f"{stage}.json").read_text())
        assert record["output"] == out and record["mlflow_run_id"] and record["git_commit"]
        assert record["manifest_sha256"] == manifest_sha256(repo / out)
        metrics = json.loads((repo / "reports" / "metrics" / f"{stage}.json").read_text())
        assert metrics, f"{stage} wrote no metrics"
        assert not [key for key in flatten_metrics(metrics) if is_timing(key)], f"{stage}: timing in a DVC output"
    clean = json.loads((repo / "data/clean/manifest.json").read_text())
    assert set(clean["inputs"]) == {"data/raw/pretrain"}, "a stage reads (and records) the roles it uses"
    assert clean["inputs"]["data/raw/pretrain"]["producer_part"] == part_sha256(
        json.loads((repo / "data/raw/manifest.json").read_text()), Path("pretrain"))
    for role, source in (("pretrain", "wikitext2"), ("pretrain", "wiki_summaries"), ("classification", "sms_spam"),
                         ("instruction", "chatterbot"), ("benchmark", "benchmarks")):
        origin = json.loads((repo / "data/raw" / role / source / "source.json").read_text())["origin"]
        assert len(origin["sha256"]) == 64
    assert (repo / "reports/data_validation/data_docs/index.html").is_file()
    counts = json.loads((repo / "reports/metrics/dedup.json").read_text())["docs_out"]
    assert counts["train"] > 0 and counts["val"] > 0 and counts["test"] > 0


def test_second_repro_does_nothing(repo: Path) -> None:
    assert "changed" not in sh(repo, "dvc", "status").stdout
    out = sh(repo, "dvc", "repro").stdout
    assert "didn't change, skipping" in out and "Running stage" not in out


def test_dag_and_metrics_show(repo: Path) -> None:
    dag = sh(repo, "dvc", "dag", "--dot").stdout
    edges = set(re.findall(r'"?([\w]+)"?\s*->\s*"?([\w]+)"?', dag))
    chain = {("download", "clean"), ("clean", "dedup"), ("dedup", "validate"), ("validate", "tokenizer"),
             ("tokenizer", "tokenize"), ("tokenize", "pretrain"), ("pretrain", "finetune_classifier"),
             ("pretrain", "finetune_instruct"), ("finetune_classifier", "evaluate"), ("finetune_instruct", "align"),
             ("finetune_instruct", "evaluate"), ("align", "evaluate"), ("evaluate", "report")}
    assert chain <= edges, dag
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "docs_out" in shown and "exact_duplicates_removed" in shown


def test_one_mlflow_run_per_stage_with_lineage_tags(repo: Path) -> None:
    with sqlite3.connect(repo / "mlflow.db") as db:
        runs = dict(db.execute("select r.run_uuid, r.name from runs r where r.status = 'FINISHED'").fetchall())
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
    assert sorted(runs.values()) == sorted(STAGES)
    by_run: dict[str, dict[str, str]] = {}
    for run_id, key, value in tags:
        by_run.setdefault(run_id, {})[key] = value
    clean_run = next(r for r, name in runs.items() if name == "clean")
    download_run = next(r for r, name in runs.items() if name == "download")
    assert by_run[clean_run]["stage"] == "clean"
    assert by_run[clean_run]["upstream.download"] == download_run
    assert by_run[clean_run]["manifest_sha256"] == manifest_sha256(repo / "data/clean")
    assert by_run[clean_run]["git_commit"] == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()


def test_bad_param_fails_in_one_line_and_keeps_outputs(repo: Path) -> None:
    params = repo / "params.yaml"
    original = params.read_text()
    before = (repo / "data/clean/manifest.json").read_text(), (repo / "reports/metrics/clean.json").read_text()
    try:
        params.write_text(original.replace("min_words: 20", "min_words: -3", 1))
        result = sh(repo, "dvc", "repro", "clean", check=False)
        assert result.returncode != 0
        assert "error: clean: clean.min_words: must be ≥ 0" in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
        # the outputs are persistent: DVC left them in place, the stage never swapped anything in
        assert ((repo / "data/clean/manifest.json").read_text(), (repo / "reports/metrics/clean.json").read_text()) \
            == before
    finally:
        params.write_text(original)
    assert "changed" not in sh(repo, "dvc", "status").stdout


def test_pretrained_model_generates_and_logged_curves(repo: Path) -> None:
    out = sh(repo, "scratchlm", "generate", "--model", "models/pretrain", "--prompt", "The history of",
             "--max-new-tokens", "5", "--seed", "1").stdout
    assert out.startswith("The history of")
    curve = (repo / "reports/plots/pretrain_loss.csv").read_text().splitlines()
    assert curve[0] == "step,train_loss,val_loss" and len(curve) > 3
    metrics = json.loads((repo / "reports/metrics/pretrain.json").read_text())
    assert metrics["steps"] == 20 and metrics["val_loss"] > 0
    assert (repo / "checkpoints/pretrain/last.ckpt").is_file()
    with sqlite3.connect(repo / "mlflow.db") as db:
        steps = db.execute("select count(*) from metrics m join runs r on m.run_uuid = r.run_uuid "
                           "where r.name = 'pretrain' and m.key = 'train_loss'").fetchone()[0]
    assert steps >= 3, "per-step train loss must reach MLflow"


@pytest.mark.parametrize(("old", "new", "expected"), [
    # a dry run lists the stages whose own deps changed; what follows re-runs once their inputs change
    # pretrain's steps are what scaling_fit predicts, not the ladder's recipe: the rungs stay; its lr is both
    ("max_steps: 20", "max_steps: 21", {"pretrain", "scaling_fit"}),
    ("lr: 0.008", "lr: 0.007", {"pretrain", "scaling_fit", *(f"scaling@{rung}" for rung in RUNGS)}),
    ("max_length: 32", "max_length: 30", {"finetune_classifier"}),
    ("eval_items: 4", "eval_items: 5", {"finetune_instruct"}),
    ("heldout_pairs: 12", "heldout_pairs: 11", {"align"}),
    ("max_items: 20", "max_items: 19", {"evaluate"}),
    ("sample_generations: 2", "sample_generations: 1", {"report"}),
])
def test_changing_params_reruns_only_that_stage_and_what_follows(repo: Path, old: str, new: str,
                                                                 expected: set[str]) -> None:
    params = repo / "params.yaml"
    original = params.read_text()
    assert old in original
    try:
        params.write_text(original.replace(old, new, 1))
        dry = sh(repo, "dvc", "repro", "--dry").stdout
    finally:
        params.write_text(original)
    ran = set(re.findall(r"Running stage '([\w@-]+)'", dry))
    assert ran == expected, dry


def test_classifier_outputs_and_cli(repo: Path) -> None:
    metrics = json.loads((repo / "reports/metrics/finetune_classifier.json").read_text())
    assert {"test", "baselines", "confusion", "split_sizes"} <= set(metrics)
    assert metrics["baselines"]["tfidf_logreg"]["accuracy"] > 0.8
    rows = (repo / "reports/plots/classifier_confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) - 1 == metrics["split_sizes"]["val"]
    out = sh(repo, "scratchlm", "classify", "--model", "models/classifier", "WIN a free prize now!").stdout
    assert out.split("\t")[0] in ("ham", "spam")


def test_failed_critical_expectation_stops_the_dag(repo: Path) -> None:
    params = repo / "params.yaml"
    original = params.read_text()
    try:
        validated_before = (repo / "reports/data_validation/manifest.json").read_text()
        assert "label_shares: {spam: [0.05, 0.5]}" in original
        params.write_text(original.replace("label_shares: {spam: [0.05, 0.5]}", "label_shares: {spam: [0.0, 0.01]}", 1))
        params.write_text(params.read_text().replace("max_steps: 20", "max_steps: 22", 1))
        result = sh(repo, "dvc", "repro", check=False)
        assert result.returncode != 0
        assert ("error: validate: label_shares: expect_column_pair_values_a_to_be_greater_than_b(max_share, share) "
                "failed") in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
        assert "Running stage 'pretrain'" not in result.stdout, "nothing after validate may run"
        assert "(the rejected output is in reports/data_validation.failed/; the previous output is kept)" in \
            result.stderr
        rejected = json.loads((repo / "reports/data_validation.failed/results.json").read_text())
        assert rejected["params"]["label_shares"] == {"spam": [0.0, 0.01]}, "the report explaining the failure is kept"
        assert (repo / "reports/data_validation/manifest.json").read_text() == validated_before
    finally:
        params.write_text(original)
    sh(repo, "dvc", "repro")
    assert "changed" not in sh(repo, "dvc", "status").stdout
    assert "data_validation.failed" not in sh(repo, "git", "status", "--porcelain").stdout  # git-ignored


def test_instruct_outputs_and_chat(repo: Path) -> None:
    metrics = json.loads((repo / "reports/metrics/finetune_instruct.json").read_text())
    assert 0 <= metrics["rouge_l"] <= 1 and metrics["eval_items"] == 4
    assert len((repo / "models/instruct/samples.jsonl").read_text().splitlines()) == 4
    out = sh(repo, "scratchlm", "chat", "--model", "models/instruct", "--prompt", "What is AI?",
             "--max-new-tokens", "5")
    assert out.returncode == 0


def test_align_outputs_evaluation_and_chat(repo: Path) -> None:
    align = json.loads((repo / "reports/metrics/align.json").read_text())
    assert align["pair_source"] == "built from the instruction set"
    assert align["pairs"]["heldout"] == align["heldout"]["pairs"] > 0 and align["pairs"]["train"] > 0
    pairs = [json.loads(line) for line in (repo / "models/aligned/pairs.jsonl").read_text().splitlines()]
    split = {r["id"]: r["split"] for r in map(json.loads, (repo / "models/instruct/split.jsonl").read_text()
                                              .splitlines())}
    assert {split[p["id"]] for p in pairs} == {"train", "val"}, "the instruction model's test split is never a pair"
    evaluation = json.loads((repo / "reports/metrics/evaluate.json").read_text())
    aligned, instruct = evaluation["aligned"], evaluation["instruct"]
    assert aligned["items"] == instruct["items"] and aligned["generated_items"] == instruct["generated_items"]
    assert aligned["rouge_l_vs_instruct"] == pytest.approx(aligned["rouge_l"] - instruct["rouge_l"])
    assert "skipped" in aligned["judge_pairwise"]
    rows = [json.loads(line) for line in (repo / "reports/evaluation/aligned_test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [json.loads(line)["id"] for line in
                                       (repo / "reports/evaluation/instruct_test.jsonl").read_text().splitlines()]
    assert "## Alignment" in (repo / "reports/model_card/model_card.md").read_text()
    out = sh(repo, "scratchlm", "chat", "--model", "models/aligned", "--prompt", "What is AI?", "--max-new-tokens", "5")
    assert out.returncode == 0


def test_evaluation_scores_every_task_with_chance_and_per_item_files(repo: Path) -> None:
    metrics = json.loads((repo / "reports/metrics/evaluate.json").read_text())
    assert set(metrics["benchmarks"]) == set(TASKS)
    for task, scores in metrics["benchmarks"].items():
        assert scores["items"] == 20 and 0 <= scores["acc"] <= 1
        rows = [json.loads(line) for line in (repo / "reports/evaluation" / f"{task}.jsonl").read_text().splitlines()]
        assert len(rows) == 20 and sum(r["acc"] for r in rows) / 20 == pytest.approx(scores["acc"])
        if task != "lambada":
            assert 0 < scores["chance"] < 1 and "acc_norm" in scores and "acc_stderr" in scores
    # evaluate.lm_sources/lm_splits are null: each pretraining source of each held-out split, on its own
    every = {f"{source}_{split}" for source in ("wikitext2", "wiki_summaries") for split in ("val", "test")}
    assert {"wikitext2_val", "wikitext2_test"} <= set(metrics["language_modeling"]) <= every
    assert all(lm["word_ppl"] > 1 and lm["bpb"] > 0 for lm in metrics["language_modeling"].values())
    cls = metrics["classifier"]
    assert cls["items"] == json.loads((repo / "reports/metrics/finetune_classifier.json").read_text())[
        "split_sizes"]["test"]
    assert {"majority", "tfidf_logreg"} <= set(cls["baselines"])
    assert metrics["instruct"]["generated_items"] == 8 and "skipped" in metrics["instruct"]["judge"]
    shown = sh(repo, "dvc", "metrics", "show").stdout
    assert "benchmarks.hellaswag.acc_norm" in shown


def test_report_writes_the_model_card_and_registers_the_models(repo: Path) -> None:
    card = (repo / "reports/model_card/model_card.md").read_text()
    for title in ("## Summary", "## Data", "## Tokenizer", "## Model and training", "### Compute", "## Evaluation",
                  "## Sample generations", "## Known limitations", "## Lineage"):
        assert title in card, title
    for figure in ("loss_curves", "benchmarks", "confusion", "data_funnel"):
        assert f"(figures/{figure}.png)" in card
        assert (repo / "reports/model_card/figures" / f"{figure}.png").stat().st_size > 1000
    assert f"| evaluate | {outputs_digest(json.loads((repo / 'reports/evaluation/manifest.json').read_text()))} | " \
           f"{manifest_sha256(repo / 'reports/evaluation')[:12]} |" in card
    for record in (repo / "reports/runs").glob("*.json"):  # no run's id: the card is a function of the outputs
        assert json.loads(record.read_text())["mlflow_run_id"] not in card
    with sqlite3.connect(repo / "mlflow.db") as db:
        names = {row[0] for row in db.execute("select name from registered_models")}
        versions = db.execute("select name, run_id, source from model_versions").fetchall()
    assert names == {"scratchlm-pretrain", "scratchlm-classifier", "scratchlm-instruct", "scratchlm-aligned"}
    report_run = json.loads((repo / "reports/runs/report.json").read_text())["mlflow_run_id"]
    assert {run for _, run, _ in versions} == {report_run}
    for _, _, source in versions:
        folder = Path(source.removeprefix("file://")) if source.startswith("file://") else None
        assert folder is not None and (folder / "model.safetensors").is_file() and (folder / "model_card.md").is_file()


def test_experiment_is_compared_by_metrics_diff_exp_show_and_mlflow_tags(repo: Path) -> None:
    """The README's loop (kept last: it leaves an experiment in the workspace): two queued experiments, each
    the committed params plus its own change, compared by `dvc exp diff/show`, `plots diff`, `metrics diff`
    and the MLflow runs tagged with their names."""
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline run")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "fewer-items", "-S", "evaluate.max_items=10")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "more-epochs", "-S", "finetune_classifier.epochs=2")
    sh(repo, "dvc", "exp", "run", "--run-all")
    for name, changed in (("fewer-items", "evaluate.max_items"), ("more-epochs", "finetune_classifier.epochs")):
        against_baseline = json.loads(sh(repo, "dvc", "exp", "diff", "HEAD", name, "--json").stdout)
        assert set(against_baseline["params"]["params.yaml"]) == {changed}, against_baseline["params"]
    with sqlite3.connect(repo / "mlflow.db") as db:
        tagged = db.execute("select r.name from runs r join tags t on t.run_uuid = r.run_uuid "
                            "where t.key = 'dvc_exp' and t.value = 'fewer-items'").fetchall()
    assert sorted(name for (name,) in tagged) == ["evaluate", "report"], "only what the change re-runs"
    exp_diff = json.loads(sh(repo, "dvc", "exp", "diff", "fewer-items", "more-epochs", "--json").stdout)
    assert exp_diff["params"]["params.yaml"]["finetune_classifier.epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert exp_diff["params"]["params.yaml"]["evaluate.max_items"] == {"old": 10, "new": 20, "diff": 10}
    assert "reports/metrics/finetune_classifier.json" in exp_diff["metrics"]
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--csv", "--drop", ".*", "--keep",
               r"Experiment|finetune_classifier\.epochs|evaluate\.max_items").stdout
    header, *rows = table.splitlines()
    assert sorted(header.split(",")) == ["Experiment", "evaluate.max_items", "finetune_classifier.epochs"], table
    assert {"more-epochs", "fewer-items"} <= {row.split(",")[0] for row in rows}, table
    every = sh(repo, "dvc", "exp", "show", "--no-pager", "--csv").stdout.splitlines()[0].split(",")
    changed = sh(repo, "dvc", "exp", "show", "--no-pager", "--csv", "--only-changed").stdout.splitlines()[0].split(",")
    assert len(changed) < len(every) / 2, (len(changed), len(every))
    plots = json.loads(sh(repo, "dvc", "plots", "diff", "fewer-items", "more-epochs", "--json").stdout)
    curves = plots["data"]["reports/plots/pretrain_loss.csv"]
    revisions = {rev for entry in curves for rev in entry.get("revisions", [])}
    assert {"fewer-items", "more-epochs"} <= revisions, curves
    sh(repo, "dvc", "exp", "apply", "fewer-items")
    assert "max_items: 10" in (repo / "params.yaml").read_text() and "max_steps: 20" in (repo / "params.yaml").read_text()
    # queued experiments ran in `.dvc/tmp/exps/<tmp>`, deleted since: their MLflow runs landed in the repository's
    # own mlflow.db, so the applied experiment audits
    record = json.loads((repo / "reports/runs/evaluate.json").read_text())
    assert record["dvc_exp"] == "fewer-items"
    with sqlite3.connect(repo / "mlflow.db") as db:
        found = db.execute("select status from runs where run_uuid = ?", (record["mlflow_run_id"],)).fetchall()
    assert found == [("FINISHED",)]
    result = sh(repo, "scratchlm", "audit", check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "HEAD", "--json").stdout)
    assert diff["reports/metrics/evaluate.json"]["benchmarks.hellaswag.items"] == {"old": 20, "new": 10, "diff": -10}
    sh(repo, "dvc", "exp", "branch", "more-epochs", "keep-more-epochs")
    assert "keep-more-epochs" in sh(repo, "git", "branch", "--list").stdout

