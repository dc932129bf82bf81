"""finetune_classifier: the pretrained GPT as a text classifier (see scratchlm.training.classifier)."""

import argparse
from pathlib import Path

from scratchlm.data.roles import role_files
from scratchlm.io import atomic_write_json
from scratchlm.lineage.stage import run_stage


def confusion_rows(matrix: list[list[int]], labels: list[str]) -> str:
    """One `actual,predicted` row per test message: the shape DVC's confusion template reads."""
    rows = ["actual,predicted"]
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            rows += [f"{labels[i]},{labels[j]}"] * count
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="the classification sources of the download output (exactly one), a source's "
                                     "folder or a labelled JSONL file (id, text, label), e.g. data/raw/classification")
    parser.add_argument("pretrained", help="pretrain output, e.g. models/pretrain")
    parser.add_argument("output", help="folder for the classifier, e.g. models/classifier")
    parser.add_argument("--checkpoints", default="checkpoints/finetune_classifier",
                        help="resume and best-epoch checkpoints (persistent)")
    parser.add_argument("--plot", default="reports/plots/classifier_confusion.csv", help="confusion matrix")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.training.classifier import finetune_classifier  # torch + Lightning: bad params fail first

        data = role_files(Path(args.data), "classification")
        metrics = finetune_classifier(data, Path(args.pretrained), out, Path(args.checkpoints), params,
                                      stage.run.log_metrics_at)
        atomic_write_json(out / "epochs.json", metrics.pop("epochs"))
        # the DVC plot shows the validation split (model selection); test figures stay for evaluation
        plot = stage.side(args.plot)
        plot.write_text(confusion_rows(metrics["val_confusion"], metrics.pop("labels")), encoding="utf-8")
        stage.run.log_artifact(plot, artifact_path="confusion")
        return metrics

    run_stage("finetune_classifier", [args.data, args.pretrained], args.output, work)


if __name__ == "__main__":
    main()
