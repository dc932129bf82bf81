"""clean: normalise and quality-filter the pretraining documents (see scratchlm.data.clean)."""

import argparse
from pathlib import Path

from scratchlm.data.clean import clean_corpus
from scratchlm.data.roles import source_roles
from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", help="the pretraining sources of the download output, e.g. data/raw/pretrain")
    parser.add_argument("output", help="folder for the clean shards, e.g. data/clean")
    args = parser.parse_args()
    raw = Path(args.raw)

    def work(params, out, stage):
        pretrain = [name for name, role in source_roles(raw).items() if role == "pretrain"]
        metrics = clean_corpus(raw, out, params, pretrain, stage.executor(params.num_proc))
        stage.run.log_artifact(out / "dropped_samples.json", artifact_path="dropped")
        return metrics

    run_stage("clean", [args.raw], args.output, work)


if __name__ == "__main__":
    main()
