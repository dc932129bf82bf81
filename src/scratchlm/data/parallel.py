"""Ordered map over worker processes: the shape every shard-parallel data step shares.

Results come back in input order, so outputs never depend on the number of workers; with one
worker everything runs in-process (no pickling, easier debugging).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes, results in input order, lazily consumed."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)
