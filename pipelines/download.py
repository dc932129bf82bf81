"""download: fetch every configured source into data/raw/<role>/<source>/ (see scratchlm.data.download)."""

import argparse
from pathlib import Path

from scratchlm.data.download import download_all
from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", help="folder for the normalised sources, e.g. data/raw")
    args = parser.parse_args()
    run_stage("download", [], args.output, lambda params, out, stage: download_all(params, Path(out)))


if __name__ == "__main__":
    main()
