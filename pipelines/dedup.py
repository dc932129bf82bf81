"""dedup: exact + near-duplicate removal, decontamination, train/val/test split (scratchlm.data.dedup)."""

import argparse
import shutil
from pathlib import Path

from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("clean", help="clean output, e.g. data/clean")
    parser.add_argument("output", help="folder for the deduplicated splits, e.g. data/dedup")
    parser.add_argument("--decontaminate", nargs="*", default=[], metavar="ROLE_DIR",
                        help="sets the corpus must not contain, e.g. data/raw/benchmark data/raw/instruction")
    parser.add_argument("--plot", default="reports/plots/dedup_cluster_sizes.csv", help="cluster size histogram")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.data.dedup import dedup_corpus  # datasketch imports scipy: bad params fail first

        evaluation = [Path(folder) for folder in args.decontaminate]
        metrics = dedup_corpus(Path(args.clean), evaluation, out, params, stage.executor(params.num_proc))
        shutil.copyfile(out / "cluster_sizes.csv", stage.side(args.plot))
        for name in ("clusters.jsonl", "decontamination.json", "cluster_sizes.csv"):
            stage.run.log_artifact(out / name, artifact_path="dedup")
        return metrics

    run_stage("dedup", [args.clean, *args.decontaminate], args.output, work, seed=0)


if __name__ == "__main__":
    main()
