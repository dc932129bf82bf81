"""MinHash and LSH for near-duplicate detection: the shingles, the signatures, the bands.

Pure functions of one document (or one chunk of documents): the dedup stage runs them inside its
executor tasks (`scratchlm.data.dedup_tasks`), so nothing here knows about files or executors.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import xxhash
from datasketch import MinHash

from scratchlm.config.data import DedupParams

SCHEME = "affine32"  # datasketch ≥ 2 names the permutation scheme; signatures are uint32
MARGIN = 0.03  # `miss_rate` is promised for pairs at jaccard_threshold + MARGIN and above
SHINGLE_PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio): order-sensitive mixing


def exact_key(words: list[str]) -> bytes:
    """Texts equal up to case, punctuation and spacing share a key (16 bytes)."""
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest()


def word_hashes(words: list[str], memo: dict[str, int]) -> np.ndarray:
    """xxh64 of each word, each distinct word hashed once per `memo` (word frequencies are Zipfian:
    a chunk of documents has far fewer distinct words than words)."""
    missing = set(words).difference(memo)
    memo.update(zip(missing, map(xxhash.xxh64_intdigest, map(str.encode, missing)), strict=True))
    return np.fromiter(map(memo.__getitem__, words), dtype=np.uint64, count=len(words))


def shingle_hashes(words: list[str], n: int, memo: dict[str, int] | None = None) -> list[int]:
    """32-bit hashes of the word n-gram shingles (one for the whole text when shorter than n words).

    Each shingle is a polynomial of its words' hashes, mixed in numpy: joining, encoding and hashing
    every n-gram from Python cost ~4x more per shingle. datasketch's affine32 scheme applies its own
    finaliser (fmix32) to these values.
    """
    hashes = word_hashes(words, {} if memo is None else memo)
    width = max(1, len(words) - n + 1)
    combined = np.full(width, len(words) < n, dtype=np.uint64)  # a text shorter than n words: its own seed
    with np.errstate(over="ignore"):  # multiplication is meant to wrap modulo 2**64
        for offset in range(min(n, len(words))):
            combined = combined * SHINGLE_PRIME + hashes[offset : offset + width]
    return ((combined >> np.uint64(32)) ^ (combined & np.uint64(0xFFFFFFFF))).tolist()


def shingle_set(words: list[str], n: int, memo: dict[str, int] | None = None) -> np.ndarray:
    """The sorted unique shingle hashes of a text (uint32): what the exact Jaccard check compares."""
    return np.unique(np.array(shingle_hashes(words, n, memo), dtype=np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted unique arrays."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / (len(a) + len(b) - shared)


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """The chance that a pair of this Jaccard similarity shares a bucket in at least one band."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def band_shape(params: DedupParams) -> tuple[int, int]:
    """(bands, rows): as given, or the most rows per band (the fewest chance candidates) for which a pair at
    `jaccard_threshold + MARGIN` is missed with probability at most `miss_rate`, within `num_perm` hashes."""
    if params.num_bands and params.rows_per_band:
        return params.num_bands, params.rows_per_band
    target = min(1.0, params.jaccard_threshold + MARGIN)
    for rows in range(params.num_perm, 0, -1):
        bands = params.num_perm // rows
        if candidate_probability(target, bands, rows) >= 1.0 - params.miss_rate:
            return bands, rows
    return params.num_perm, 1


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> Any:
    """The MinHash permutations of (num_perm, seed): drawing them is 80% of a short document's cost."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations


def signatures(docs_words: list[list[str]], params: DedupParams, num_perm: int) -> np.ndarray:
    """(docs, num_perm) uint32: datasketch's MinHash of each document's shingle hashes.

    One MinHash is cleared and reused for every document (its constructor costs as much as hashing a
    short document), and `hashfunc=int` because the shingles are hashed already.
    """
    minhash = MinHash(num_perm=num_perm, seed=params.seed, hashfunc=int, scheme=SCHEME,
                      permutations=_permutations(num_perm, params.seed))
    memo: dict[str, int] = {}  # word hashes, shared by the documents
    out = np.empty((len(docs_words), num_perm), dtype=np.uint32)
    for row, words in enumerate(docs_words):
        minhash.clear()
        minhash.update_batch(shingle_hashes(words, params.shingle_words, memo))
        out[row] = minhash.hashvalues
    return out


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: one key per band, a polynomial of the band's rows (a collision only adds a
    candidate, which the exact check then rejects)."""
    keys = np.zeros((len(sigs), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            for column in range(band * rows, (band + 1) * rows):
                keys[:, band] = keys[:, band] * SHINGLE_PRIME + sigs[:, column].astype(np.uint64)
    return keys
