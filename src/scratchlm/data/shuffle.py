"""A shuffle on disk: tasks write rows bucketed by partition, other tasks read one partition from all.

This is how the dedup stage's global steps (grouping band keys, de-duplicating candidate pairs, gathering
cluster members) run as executor tasks without any process holding the corpus's keys: a writer saves its
rows sorted by partition (`<name>.npy`) with the partition boundaries (`<name>.off.npy`); a reader
memory-maps each writer's file and copies only its partition's slice. Files live under the stage's work
folder, which on a cluster is on the filesystem every node shares (see `scratchlm.data.parallel`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

MIX = np.uint64(0x9E3779B97F4A7C15)


def hash_partition(values: np.ndarray, partitions: int) -> np.ndarray:
    """The partition (0 … partitions-1) of each uint64 value: a multiplicative hash, so keys that are
    small integers (document indices) spread as evenly as keys that are hashes already."""
    with np.errstate(over="ignore"):
        mixed = values.astype(np.uint64) * MIX
    return ((mixed >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)


def pair_partition(pairs: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each (i, j) row: equal pairs always land in the same one."""
    with np.errstate(over="ignore"):
        return hash_partition(pairs[:, 0].astype(np.uint64) * MIX + pairs[:, 1].astype(np.uint64), partitions)


def offsets_path(path: Path) -> Path:
    return path.with_suffix(".off.npy")


def write_partitioned(path: Path, rows: np.ndarray, parts: np.ndarray, partitions: int) -> None:
    """Save `rows` grouped by their partition (stable within one), and where each partition starts."""
    order = np.argsort(parts, kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rows[order])
    np.save(offsets_path(path), np.searchsorted(parts[order], np.arange(partitions + 1)).astype(np.int64))


def read_partition(paths: Iterable[Path], partition: int, empty: np.ndarray) -> np.ndarray:
    """Partition `partition`'s rows from every writer's file, in the order of `paths` (`empty` when none)."""
    pieces = []
    for path in paths:
        low, high = np.load(offsets_path(path), mmap_mode="r")[partition : partition + 2]  # one page, not all P
        if high > low:
            pieces.append(np.array(np.load(path, mmap_mode="r")[low:high]))
    return np.concatenate(pieces) if pieces else empty


def rows_in_range(path: Path, low: int, high: int) -> np.ndarray:
    """The values of a sorted 1-d int64 file that lie in [low, high): a memory-mapped binary search, so a
    task reads only its own range of a list written by another."""
    values = np.load(path, mmap_mode="r")
    return np.array(values[np.searchsorted(values, low) : np.searchsorted(values, high)])
