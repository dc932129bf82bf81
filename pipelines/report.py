"""report: the model card and figures, and the models registered in MLflow (see scratchlm.reporting)."""

import argparse
from pathlib import Path

from scratchlm.lineage.stage import run_stage
from scratchlm.reporting.registry import register_evaluated
from scratchlm.reporting.report import build_report
from scratchlm.stages import METRIC_STAGES, REGISTERED


def stage_outputs(pairs: list[str]) -> dict[str, Path]:
    outputs = {}
    for pair in pairs:
        stage, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: report: --outputs takes stage=path pairs, got {pair!r}")
        outputs[stage] = Path(path)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", help="the stages' metrics files, e.g. reports/metrics")
    parser.add_argument("loss_curve", help="pretraining loss curve, e.g. reports/plots/pretrain_loss.csv")
    parser.add_argument("output", help="folder for model_card.md and figures/, e.g. reports/model_card")
    parser.add_argument("--outputs", nargs="+", required=True, help="stage=folder for every stage, in DAG order")
    args = parser.parse_args()
    outputs = stage_outputs(args.outputs)

    def work(params, out, stage):
        metrics = build_report(Path(args.metrics), Path(args.loss_curve), outputs, out, params)
        stage.run.log_artifact(out, artifact_path="model_card")
        if params.register_models:  # after every check has passed, before the run ends
            stage.publish.append(lambda: print(register_evaluated(stage.run, Path(args.metrics), outputs,
                                                                  out / "model_card.md", params.registry_prefix)))
            metrics["registered_models"] = len(REGISTERED)
        return metrics

    inputs = [*(str(Path(args.metrics) / f"{stage}.json") for stage in METRIC_STAGES), args.loss_curve,
              *(str(p) for p in outputs.values())]
    run_stage("report", inputs, args.output, work)


if __name__ == "__main__":
    main()
