"""evaluate: every model against held-out data and benchmarks (see scratchlm.evaluation.evaluate)."""

import argparse
from pathlib import Path

from scratchlm.data.roles import role_files, role_folder
from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for role, example in (("benchmark", "one <task>.jsonl each"), ("classification", "its labelled set"),
                          ("instruction", "its instruction set")):
        parser.add_argument(role, help=f"the download output's {role} sources ({example}), e.g. data/raw/{role}")
    parser.add_argument("dedup", help="dedup output with the held-out val/test documents, e.g. data/dedup")
    parser.add_argument("pretrain", help="pretrained model, e.g. models/pretrain")
    parser.add_argument("classifier", help="classifier model, e.g. models/classifier")
    parser.add_argument("instruct", help="instruction model, e.g. models/instruct")
    parser.add_argument("aligned", help="aligned model, e.g. models/aligned")
    parser.add_argument("output", help="folder for the per-item results, e.g. reports/evaluation")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.evaluation.evaluate import EvalInputs, evaluate_all  # torch: bad params fail first

        inputs = EvalInputs(role_folder(Path(args.benchmark), "benchmark"), Path(args.dedup), Path(args.pretrain),
                            Path(args.classifier), role_files(Path(args.classification), "classification"),
                            Path(args.instruct), role_files(Path(args.instruction), "instruction"), Path(args.aligned))
        metrics = evaluate_all(inputs, out, params)
        stage.run.log_artifact(out, artifact_path="evaluation")
        return metrics

    run_stage("evaluate", [args.benchmark, args.classification, args.instruction, args.dedup, args.pretrain,
                           args.classifier, args.instruct, args.aligned], args.output, work)


if __name__ == "__main__":
    main()
