"""Tiny token files for training tests: random sentences → dedup-shaped shards → a BPE tokenizer → bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scratchlm.config.data import TokenizeParams, TokenizerParams
from scratchlm.io import make_document, write_sharded
from scratchlm.tokenizer import train_tokenizer
from scratchlm.tokens import tokenize_splits


def build_token_data(root: Path, words: list[str]) -> tuple[Path, Path]:
    """(tokens dir, tokenizer dir) under `root`, from seeded 60-word documents over `words`."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("val", 20), ("test", 5)):
        docs = [make_document(f"{split}/{i}", " ".join(rng.choice(words, 60)) + ".", "s", {"split": split})
                for i in range(n)]
        write_sharded(root / "dedup" / split, "part", iter(docs), shard_docs=50)
    (root / "tok").mkdir()
    (root / "tokens").mkdir()
    train_tokenizer(root / "dedup", root / "tok", TokenizerParams(vocab_size=300, eval_docs=5))
    tokenize_splits(root / "dedup", root / "tok", root / "tokens", TokenizeParams(check_docs=5))
    return root / "tokens", root / "tok"
