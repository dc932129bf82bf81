"""evaluate: every model against held-out data and benchmarks (see scratchlm.evaluation.evaluate)."""

import argparse
from pathlib import Path

from pipelines._stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("benchmarks", help="benchmark items, one <task>.jsonl each, e.g. data/raw/benchmarks")
    parser.add_argument("dedup", help="dedup output with the held-out val/test documents, e.g. data/dedup")
    parser.add_argument("pretrain", help="pretrained model, e.g. models/pretrain")
    parser.add_argument("classifier", help="classifier model, e.g. models/classifier")
    parser.add_argument("classifier_data", help="its labelled data, e.g. data/raw/sms_spam/data.jsonl")
    parser.add_argument("instruct", help="instruction model, e.g. models/instruct")
    parser.add_argument("instruct_data", help="its instruction data, e.g. data/raw/chatterbot/data.jsonl")
    parser.add_argument("output", help="folder for the per-item results, e.g. reports/evaluation")
    args = parser.parse_args()
    paths = [Path(p) for p in (args.benchmarks, args.dedup, args.pretrain, args.classifier, args.classifier_data,
                               args.instruct, args.instruct_data)]

    def work(params, out, stage):
        from scratchlm.evaluation.evaluate import EvalInputs, evaluate_all  # torch: bad params fail first

        metrics = evaluate_all(EvalInputs(*paths), out, params)
        stage.run.log_artifact(out, artifact_path="evaluation")
        return metrics

    run_stage("evaluate", [str(p) for p in paths], args.output, work)


if __name__ == "__main__":
    main()
