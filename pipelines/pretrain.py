"""pretrain: train the GPT on the token files with Lightning (see scratchlm.training.pretrain).

On several nodes every node runs this same command in its own checkout, started by a launcher
(`scratchlm.launch`); rank 0 alone writes the outputs, the manifest, the run record and the MLflow run.
"""

import argparse
from pathlib import Path

from scratchlm.launch import is_rank_zero
from scratchlm.lineage.stage import run_stage


def write_curve(path: Path, rows: list[dict]) -> None:
    lines = ["step,train_loss,val_loss"] + [f"{r['step']},{r['train_loss']},{r['val_loss']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tokens", help="tokenize output, e.g. data/tokens")
    parser.add_argument("tokenizer", help="tokenizer output, e.g. models/tokenizer")
    parser.add_argument("output", help="folder for the exported model, e.g. models/pretrain")
    parser.add_argument("--choice", default="reports/scaling/choice.json", help="scaling_fit's decision: the "
                        "shape and steps for model.size: from_ladder")
    parser.add_argument("--checkpoints", default="checkpoints/pretrain", help="resume checkpoints (persistent)")
    parser.add_argument("--plot", default="reports/plots/pretrain_loss.csv", help="loss curve for dvc plots")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.scaling.chosen import apply_choice, read_choice
        from scratchlm.training.pretrain import pretrain  # torch + Lightning: seconds; bad params fail first

        if params.model.size == "from_ladder":  # the shape and steps scaling_fit chose for the budget
            params = apply_choice(params, read_choice(Path(args.choice)))
            stage.run.log_params({"chosen": {"n_layer": params.model.n_layer, "n_head": params.model.n_head,
                                             "n_embd": params.model.n_embd, "max_steps": params.max_steps}})
        metrics, rows = pretrain(Path(args.tokens), Path(args.tokenizer), out, Path(args.checkpoints), params,
                                 stage.run.log_metrics_at)
        metrics["shape"] = {key: getattr(params.model, key) for key in ("n_layer", "n_head", "n_embd")}
        if is_rank_zero():
            write_curve(stage.side(args.plot), rows)
        stage.run.log_artifact(out / "samples.txt", artifact_path="samples")
        return metrics

    run_stage("pretrain", [args.tokens, args.tokenizer, args.choice], args.output, work)


if __name__ == "__main__":
    main()
