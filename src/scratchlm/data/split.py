"""Which split a document of the deduplicated corpus goes to: a pure function of the document."""

from __future__ import annotations

import hashlib
import json

SPLITS = ("train", "val", "test")
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}  # who survives a duplicate cluster first: held-out text


def split_of(doc: dict[str, str], val_fraction: float) -> str:
    """Held-out splits stay; training documents go to `val` by a stable hash of their id (so the split
    depends neither on the order documents arrive in nor on which other documents exist)."""
    split = json.loads(doc["meta"]).get("split", "train")
    if split != "train":
        return split
    bucket = int.from_bytes(hashlib.sha256(doc["id"].encode("utf-8")).digest()[:8], "big") / 2**64
    return "val" if bucket < val_fraction else "train"
