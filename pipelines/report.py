"""report: the model card and figures, and the models registered in MLflow (see scratchlm.reporting)."""

import argparse
from pathlib import Path

from pipelines._stage import run_stage
from scratchlm.reporting.report import METRIC_STAGES, build_report
from scratchlm.tracking import flatten_metrics

# which stage output each registered model is, and the evaluate metrics that travel with it as tags
REGISTERED = {"pretrain": ("language_modeling", "benchmark_mean"), "finetune_classifier": ("classifier",),
              "finetune_instruct": ("instruct",)}


def stage_outputs(pairs: list[str]) -> dict[str, Path]:
    outputs = {}
    for pair in pairs:
        stage, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: report: --outputs takes stage=path pairs, got {pair!r}")
        outputs[stage] = Path(path)
    return outputs


def registry_tags(evaluation: dict, keys: tuple[str, ...], manifest_run: str) -> dict[str, str]:
    metrics = flatten_metrics({key: evaluation[key] for key in keys})
    tags = {k: f"{v:.6g}" for k, v in metrics.items() if "baselines" not in k and "confusion" not in k}
    return {**tags, "stage_run_id": manifest_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", help="the stages' metrics files, e.g. reports/metrics")
    parser.add_argument("loss_curve", help="pretraining loss curve, e.g. reports/plots/pretrain_loss.csv")
    parser.add_argument("output", help="folder for model_card.md and figures/, e.g. reports/model_card")
    parser.add_argument("--outputs", nargs="+", required=True, help="stage=folder for every stage, in DAG order")
    args = parser.parse_args()
    outputs = stage_outputs(args.outputs)

    def work(params, out, run):
        metrics = build_report(Path(args.metrics), Path(args.loss_curve), outputs, out, params)
        run.log_artifact(out, artifact_path="model_card")
        if params.register_models:
            import json

            evaluation = json.loads((Path(args.metrics) / "evaluate.json").read_text(encoding="utf-8"))
            for stage, keys in REGISTERED.items():
                manifest = json.loads((outputs[stage] / "manifest.json").read_text(encoding="utf-8"))
                name = f"{params.registry_prefix}-{stage.removeprefix('finetune_')}"
                version = run.register_model(name, outputs[stage], out / "model_card.md",
                                             registry_tags(evaluation, keys, manifest.get("mlflow_run_id") or ""))
                print(f"registered {name} version {version}")
            metrics["registered_models"] = len(REGISTERED)
        return metrics

    inputs = [*(str(Path(args.metrics) / f"{stage}.json") for stage in METRIC_STAGES), args.loss_curve,
              *(str(p) for p in outputs.values())]
    run_stage("report", inputs, args.output, work)


if __name__ == "__main__":
    main()
