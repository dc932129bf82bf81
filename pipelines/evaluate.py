"""evaluate: every model against held-out data and benchmarks (see scratchlm.evaluation.evaluate)."""

import argparse
from pathlib import Path

from pipelines._stage import run_stage
from scratchlm.io import role_files, role_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", help="the download output: its benchmark, classification and instruction sources "
                                    "are found by role, e.g. data/raw")
    parser.add_argument("dedup", help="dedup output with the held-out val/test documents, e.g. data/dedup")
    parser.add_argument("pretrain", help="pretrained model, e.g. models/pretrain")
    parser.add_argument("classifier", help="classifier model, e.g. models/classifier")
    parser.add_argument("instruct", help="instruction model, e.g. models/instruct")
    parser.add_argument("output", help="folder for the per-item results, e.g. reports/evaluation")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.evaluation.evaluate import EvalInputs, evaluate_all  # torch: bad params fail first

        raw = Path(args.raw)
        inputs = EvalInputs(role_folder(raw, "benchmark"), Path(args.dedup), Path(args.pretrain),
                            Path(args.classifier), role_files(raw, "classification"), Path(args.instruct),
                            role_files(raw, "instruction"))
        metrics = evaluate_all(inputs, out, params)
        stage.run.log_artifact(out, artifact_path="evaluation")
        return metrics

    run_stage("evaluate", [args.raw, args.dedup, args.pretrain, args.classifier, args.instruct], args.output, work)


if __name__ == "__main__":
    main()
