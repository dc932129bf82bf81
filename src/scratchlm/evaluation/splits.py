"""The splits a fine-tune stored beside its model (`split.jsonl`), and seeded orders of records by id.

A fine-tune writes each record's split next to the model it exports; evaluation reads it back, so it scores
exactly the held-out records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scratchlm.io import DataFormatError, read_jsonl, read_set


def id_hash(record: dict[str, Any], seed: int) -> str:
    """A record's place in a seeded order that depends on its id alone."""
    return hashlib.sha256(f"{seed}:{record['id']}".encode()).hexdigest()


def hash_order(records: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The records in the seeded order of their ids' hashes: the first n of it are a sample across the set's
    sources, where the first n by id would all be the first source's."""
    return sorted(records, key=lambda r: id_hash(r, seed))


def stored_splits(data_files: list[Path], model_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The set's records grouped by the split the fine-tune stored; a missing record is an error."""
    assigned = {row["id"]: row["split"] for row in read_jsonl(model_dir / "split.jsonl")}
    splits: dict[str, list[dict[str, Any]]] = {}
    for record in read_set(data_files):
        if record.get("id") in assigned:
            splits.setdefault(assigned.pop(record["id"]), []).append(record)
    if assigned:
        shown = ", ".join(str(path) for path in data_files)
        raise DataFormatError(f"{shown}: record {next(iter(assigned))} of {model_dir / 'split.jsonl'} is missing "
                              "(the data changed since fine-tuning)")
    if not splits.get("test"):
        raise DataFormatError(f"{model_dir / 'split.jsonl'}: no test records")
    return splits
