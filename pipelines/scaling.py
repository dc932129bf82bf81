"""scaling@<rung>: one rung of the ladder, the pretrain recipe at the rung's size (see scratchlm.scaling).

dvc.yaml runs this once per rung (`foreach` over `scaling.rungs`), so DVC caches each rung on its own
and re-runs only those whose params changed.
"""

import argparse
from pathlib import Path

from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rung", help="a key of scaling.rungs")
    parser.add_argument("tokens", help="tokenize output, e.g. data/tokens")
    parser.add_argument("tokenizer", help="tokenizer output, e.g. models/tokenizer")
    parser.add_argument("benchmarks", help="the benchmark role, e.g. data/raw/benchmark")
    parser.add_argument("output", help="the rung's model folder, e.g. models/scaling/<rung>")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.data.roles import role_folder
        from scratchlm.scaling.ladder import RUNG_SIZE_KEYS
        from scratchlm.scaling.rung import train_rung  # torch + Lightning: seconds; bad params fail first

        benchmarks = role_folder(Path(args.benchmarks), "benchmark")
        results = train_rung(params, Path(args.tokens), Path(args.tokenizer), benchmarks, out, stage.run.log_metrics_at)
        # every rung's size under the same keys, so MLflow's compare view plots loss against `rung.n_embd`
        stage.run.log_params({"rung": {key: results[key] for key in RUNG_SIZE_KEYS}})
        return results

    run_stage(f"scaling@{args.rung}", [args.tokens, args.tokenizer, args.benchmarks], args.output, work)


if __name__ == "__main__":
    main()
