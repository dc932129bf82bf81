"""tokenizer: train a byte-level BPE on the dedup train split (see scratchlm.tokenizer)."""

import argparse
from pathlib import Path

from scratchlm.lineage.stage import run_stage
from scratchlm.tokenizer import train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dedup", help="dedup output (reads train/ to learn, val/ to measure), e.g. data/dedup")
    parser.add_argument("output", help="folder for tokenizer.json, e.g. models/tokenizer")
    parser.add_argument("--validation", default="reports/data_validation/corpus.json",
                        help="validate's results for the corpus: the gate this stage trains behind (an input)")
    args = parser.parse_args()
    run_stage("tokenizer", [args.dedup, args.validation], args.output,
              lambda params, out, stage: train_tokenizer(Path(args.dedup), out, params))


if __name__ == "__main__":
    main()
