"""The `report` stage: the model card and its figures, from every stage's metrics and manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scratchlm.config.report import ReportParams
from scratchlm.lineage.manifest import manifest_sha256
from scratchlm.reporting.model_card import (
    CardInputs,
    instruct_samples,
    last_samples,
    load_manifests,
    load_metrics,
    load_sources,
    render,
    scaling_check,
    side_by_side,
)
from scratchlm.scaling import LAW_FILE
from scratchlm.stages import METRIC_STAGES


def funnel(metrics: dict[str, dict[str, Any]]) -> list[tuple[str, int]]:
    clean, dedup = metrics["clean"], metrics["dedup"]
    after_dedup = dedup["docs_in"] - dedup["exact_duplicates_removed"] - dedup["near_duplicates_removed"]
    return [("downloaded", clean["docs_in"]), ("cleaned", clean["docs_out"]), ("deduplicated", after_dedup),
            ("decontaminated", sum(dedup["docs_out"].values()))]


def confusion_of(classifier: dict[str, Any]) -> tuple[list[list[int]], list[str]]:
    """The evaluate stage's `{actual_x: {predicted_y: n}}` back into a matrix and its labels."""
    rows = classifier["confusion"]
    labels = [key.removeprefix("actual_") for key in rows]
    return [[rows[f"actual_{a}"][f"predicted_{p}"] for p in labels] for a in labels], labels


def draw_figures(metrics: dict[str, dict[str, Any]], loss_curve: Path, fig_dir: Path,
                 law: dict[str, Any] | None = None) -> dict[str, str]:
    """Every figure, as paths relative to the card."""
    from scratchlm.reporting import figures

    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    if law:
        p = law["prediction"]
        figures.scaling_law([(r["flops"], r["val_loss"]) for r in law["rungs"]], law["curve"],
                            (law["pretrain_planned"]["flops"], p["pretrain_val_loss"], p["low"], p["high"]),
                            metrics["pretrain"]["val_loss"], fig_dir / "scaling_law.png")
        drawn["scaling_law"] = "figures/scaling_law.png"
    ev = metrics["evaluate"]
    figures.loss_curves(figures.read_loss_curve(loss_curve), fig_dir / "loss_curves.png",
                        metrics["pretrain"].get("unigram_val_loss"))
    figures.benchmark_bars(ev["benchmarks"], fig_dir / "benchmarks.png")
    figures.confusion_matrix(*confusion_of(ev["classifier"]), fig_dir / "confusion.png")
    figures.data_funnel(funnel(metrics), fig_dir / "data_funnel.png")
    return {name: f"figures/{name}.png" for name in ("loss_curves", "benchmarks", "confusion", "data_funnel")} | drawn


def build_report(metrics_dir: Path, loss_curve: Path, outputs: dict[str, Path], out_dir: Path,
                 params: ReportParams) -> dict[str, Any]:
    """Write `model_card.md` and `figures/*.png` into `out_dir`; `outputs` maps each stage to its folder."""
    metrics = load_metrics(metrics_dir, METRIC_STAGES)
    law = json.loads((outputs["scaling_fit"] / LAW_FILE).read_text(encoding="utf-8"))
    run = CardInputs(metrics=metrics, manifests=load_manifests(outputs), sources=load_sources(outputs["download"]),
                    digests={stage: manifest_sha256(folder) or "" for stage, folder in outputs.items()},
                    pretrain_samples=last_samples(outputs["pretrain"] / "samples.txt", params.sample_generations),
                    instruct_samples=instruct_samples(outputs["evaluate"] / "instruct_test.jsonl",
                                                      params.sample_generations),
                    aligned_samples=side_by_side(outputs["evaluate"] / "instruct_test.jsonl",
                                                 outputs["evaluate"] / "aligned_test.jsonl", params.sample_generations),
                    figures=draw_figures(metrics, loss_curve, out_dir / "figures", law), scaling=law)
    card = render(run)
    (out_dir / "model_card.md").write_text(card, encoding="utf-8")
    check = scaling_check(law, metrics["pretrain"]["val_loss"])
    return {"card_bytes": len(card.encode("utf-8")), "figures": len(run.figures), "stages": len(run.manifests),
            "scaling_prediction_error": check["relative_error"],
            "scaling_prediction_inside_interval": check["inside_interval"]}
