"""scaling_fit: the law fitted to the ladder, and pretrain's final val loss predicted before it trains.

Its run in MLflow is the ladder's parent: every rung's run is nested under it, so the compare view
shows the ladder.
"""

import argparse
from pathlib import Path

from scratchlm.config.base import ConfigError
from scratchlm.io import dumps_json
from scratchlm.lineage.stage import load_params, run_stage

#: What the metrics file says of the chosen size (law.json has every candidate).
CHOSEN_METRICS = ("n_layer", "n_head", "n_embd", "params", "tokens", "loss", "low", "high")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ladder", help="the rungs' folders, e.g. models/scaling")
    parser.add_argument("tokenizer", help="tokenizer output (its vocabulary sizes pretrain), e.g. models/tokenizer")
    parser.add_argument("output", help="folder for law.json, e.g. reports/scaling")
    parser.add_argument("--throughput", default="reports/bench/size_throughput.json",
                        help="tokens/s of each candidate size (bench/size_throughput.py): budget_minutes to tokens")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.lineage.runrecord import read_run_record, run_in_store
        from scratchlm.scaling import CHOICE_FILE, LAW_FILE
        from scratchlm.scaling.chosen import decision
        from scratchlm.scaling.law import fit_ladder
        from scratchlm.tokenizer import load_tokenizer

        vocab = load_tokenizer(Path(args.tokenizer) / "tokenizer.json").get_vocab_size()
        names = list(params.ladder.rungs)
        law = fit_ladder(Path(args.ladder), names, params.recipe, vocab, params.fit, Path(args.throughput))
        (out / LAW_FILE).write_text(dumps_json(law), encoding="utf-8")
        from_ladder = params.recipe.model.size == "from_ladder"
        (out / CHOICE_FILE).write_text(dumps_json(decision(law, from_ladder)), encoding="utf-8")  # pretrain reads
        # the rungs whose runs are in this run's store (a rung another clone ran is nested where it lives)
        rung_runs = [run_in_store(read_run_record(f"scaling@{name}") or {}, stage.run.store) for name in names]
        stage.publish.append(lambda: stage.run.adopt(rung_runs))  # once every check has passed
        chosen = law["choice"].get("chosen") or {}
        return {key: law[key] for key in ("prediction", "cost", "pretrain_planned")} | {
            "law": law["law"], "chosen": {key: chosen[key] for key in CHOSEN_METRICS if key in chosen}}

    # each rung's folder is an input of its own (its manifest, its producer), and the ladder folder as a whole
    # is dvc.yaml's dep: both are recorded, so the audit walks to every rung and matches dvc.lock
    try:
        rungs = [f"{args.ladder}/{name}" for name in load_params("scaling_fit").params.ladder.rungs]
    except ConfigError:
        rungs = []  # run_stage reports the bad params in its one line
    run_stage("scaling_fit", [args.ladder, *rungs, args.tokenizer, args.throughput], args.output, work)


if __name__ == "__main__":
    main()
