"""tokenize: encode every split into flat token files with JSON headers (see scratchlm.tokenizer)."""

import argparse
from pathlib import Path

from scratchlm.lineage.stage import run_stage
from scratchlm.tokens import tokenize_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dedup", help="dedup output, e.g. data/dedup")
    parser.add_argument("tokenizer", help="tokenizer output, e.g. models/tokenizer")
    parser.add_argument("output", help="folder for <split>/part-*.bin token shards + <split>.json indexes, "
                                       "e.g. data/tokens")
    args = parser.parse_args()
    run_stage("tokenize", [args.dedup, args.tokenizer], args.output,
              lambda params, out, stage: tokenize_splits(Path(args.dedup), Path(args.tokenizer), out, params,
                                                         stage.executor(1)))


if __name__ == "__main__":
    main()
