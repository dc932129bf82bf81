"""tokenize: encode every split into flat token files with JSON headers (see scratchlm.tokenizer)."""

import argparse
from pathlib import Path

from pipelines._stage import run_stage
from scratchlm.tokenizer import tokenize_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dedup", help="dedup output, e.g. data/dedup")
    parser.add_argument("tokenizer", help="tokenizer output, e.g. models/tokenizer")
    parser.add_argument("output", help="folder for {train,val,test}.bin + .json, e.g. data/tokens")
    args = parser.parse_args()
    run_stage("tokenize", [args.dedup, args.tokenizer], args.output,
              lambda params, out, stage: tokenize_splits(Path(args.dedup), Path(args.tokenizer), out, params))


if __name__ == "__main__":
    main()
