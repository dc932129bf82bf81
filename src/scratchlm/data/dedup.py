"""The `dedup` stage: exact and MinHash-LSH near-duplicate removal across all sources, then the split.

Signatures are computed shard by shard in worker processes (datasketch MinHash with an xxhash hash
function and `update_batch`); only the LSH bucket join and the final split are global. Within a
duplicate cluster one document is kept deterministically: held-out splits first (so dedup never
eats evaluation text), then the configured source priority, then the smallest id.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from scratchlm.config import DedupParams
from scratchlm.data.decontaminate import ContaminationIndex, evaluation_texts
from scratchlm.data.filters import words_of
from scratchlm.data.parallel import parallel_map
from scratchlm.io import atomic_write_json, document_shards, read_documents, write_jsonl, write_sharded

SCHEME = "affine32"  # datasketch ≥ 2 names the permutation scheme; signatures are uint32
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}


def exact_key(words: list[str]) -> str:
    """Texts equal up to case, punctuation and spacing share a key."""
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).hexdigest()


def _hash32(data: bytes) -> int:
    """datasketch expects 32-bit hash values; xxhash is ~15x faster than its sha1 default."""
    return xxhash.xxh32_intdigest(data)


def shingles(words: list[str], n: int) -> list[bytes]:
    """Word n-gram shingles as bytes (the whole text when shorter than n words)."""
    if len(words) <= n:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> Any:
    """The MinHash permutations of (num_perm, seed): drawing them is 80% of a short document's cost."""
    return MinHash(num_perm=num_perm, seed=seed, hashfunc=_hash32, scheme=SCHEME).permutations


def signature(words: list[str], params: DedupParams) -> np.ndarray:
    num_perm = params.num_bands * params.rows_per_band
    minhash = MinHash(num_perm=num_perm, seed=params.seed, hashfunc=_hash32, scheme=SCHEME,
                      permutations=_permutations(num_perm, params.seed))
    minhash.update_batch(shingles(words, params.shingle_words))
    return minhash.hashvalues


@dataclass
class ShardSignatures:
    ids: list[str]
    keys: list[str]
    signatures: np.ndarray  # (docs, num_perm) uint32


CHUNK_DOCS = 128  # signature jobs: small enough that one long shard (WikiText) does not hold up the pool


def _chunk_signatures(job: tuple[Path, int, DedupParams]) -> ShardSignatures:
    path, start, params = job
    docs = read_documents(path)[start : start + CHUNK_DOCS]
    words = [words_of(d["text"]) for d in docs]  # once per document: the exact key and the shingles share them
    num_perm = params.num_bands * params.rows_per_band
    sigs = np.stack([signature(w, params) for w in words]) if docs else np.zeros((0, num_perm), np.uint32)
    return ShardSignatures([d["id"] for d in docs], [exact_key(w) for w in words], sigs)


def keep_order(doc: dict[str, str], priority: list[str]) -> tuple[int, int, str]:
    """Sort key deciding which member of a duplicate cluster survives."""
    split = json.loads(doc["meta"]).get("split", "train")
    rank = priority.index(doc["source"]) if doc["source"] in priority else len(priority)
    return SPLIT_RANK.get(split, 2), rank, doc["id"]


def near_duplicate_pairs(signatures: np.ndarray, params: DedupParams) -> list[tuple[int, int]]:
    """Candidate pairs from datasketch's banded LSH, kept when the estimated Jaccard passes."""
    lsh = MinHashLSH(num_perm=signatures.shape[1], params=(params.num_bands, params.rows_per_band))
    hashes = [LeanMinHash(seed=params.seed, hashvalues=sig, scheme=SCHEME) for sig in signatures]
    for index, minhash in enumerate(hashes):
        lsh.insert(index, minhash, check_duplication=False)
    pairs = []
    for index, minhash in enumerate(tqdm(hashes, desc="dedup lsh", unit="doc", mininterval=2)):
        for other in lsh.query(minhash):
            if other > index and np.mean(signatures[index] == signatures[other]) >= params.jaccard_threshold:
                pairs.append((index, other))
    return sorted(pairs)


def clusters_of(pairs: list[tuple[int, int]], n: int) -> np.ndarray:
    """Connected components of the duplicate graph: a label per document."""
    if not pairs:
        return np.arange(n)
    rows, cols = zip(*pairs, strict=True)
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def compute_signatures(clean_dir: Path, params: DedupParams) -> ShardSignatures:
    """Signatures and exact keys of every clean document, in shard order."""
    jobs = [(path, start, params) for path in document_shards(clean_dir)
            for start in range(0, max(1, pq.ParquetFile(path).metadata.num_rows), CHUNK_DOCS)]
    parts = list(tqdm(parallel_map(_chunk_signatures, jobs, params.num_proc), total=len(jobs),
                      desc="dedup signatures", unit="chunk"))
    num_perm = params.num_bands * params.rows_per_band
    return ShardSignatures(
        [i for p in parts for i in p.ids],
        [k for p in parts for k in p.keys],
        np.concatenate([p.signatures for p in parts]) if parts else np.zeros((0, num_perm), np.uint32),
    )


def find_duplicates(sigs: ShardSignatures, params: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels per document: (exact-duplicate groups, final clusters after near-dup joining).

    LSH runs on one representative per exact group, so exact copies cost nothing in the join.
    """
    exact_groups: dict[str, int] = {}
    exact_label = np.array([exact_groups.setdefault(k, len(exact_groups)) for k in sigs.keys], dtype=np.int64)
    first_of_group = np.unique(exact_label, return_index=True)[1]
    near = near_duplicate_pairs(sigs.signatures[first_of_group], params)
    return exact_label, clusters_of(near, len(first_of_group))[exact_label]


def choose_survivors(docs: list[dict[str, str]], exact: np.ndarray, labels: np.ndarray,
                     priority: list[str]) -> list[dict[str, Any]]:
    """For each cluster with more than one member: the kept id, the removed ids, exact or near."""
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    clusters = []
    for group in members.values():
        if len(group) > 1:
            ordered = sorted(group, key=lambda i: keep_order(docs[i], priority))
            kind = "exact" if len({int(exact[i]) for i in group}) == 1 else "near"
            clusters.append({"kept": docs[ordered[0]]["id"], "removed": [docs[i]["id"] for i in ordered[1:]],
                             "kind": kind})
    return sorted(clusters, key=lambda c: c["kept"])


def cluster_size_histogram(clusters: list[dict[str, Any]]) -> list[dict[str, int]]:
    sizes = Counter(1 + len(c["removed"]) for c in clusters)
    return [{"cluster_size": size, "clusters": count} for size, count in sorted(sizes.items())]


def split_of(doc: dict[str, str], val_fraction: float) -> str:
    """Held-out splits stay; training documents go to `val` by a stable hash of their id."""
    split = json.loads(doc["meta"]).get("split", "train")
    if split != "train":
        return split
    bucket = int.from_bytes(hashlib.sha256(doc["id"].encode("utf-8")).digest()[:8], "big") / 2**64
    return "val" if bucket < val_fraction else "train"


def load_clean_documents(clean_dir: Path) -> list[dict[str, str]]:
    """Every clean document in shard order (the order the signatures were computed in)."""
    return [doc for path in document_shards(clean_dir) for doc in read_documents(path)]


def decontaminate(docs: list[dict[str, str]], splits: list[str], index: ContaminationIndex) -> dict[str, list[str]]:
    """Training document id → the evaluation groups it shares an n-gram with (contaminated only)."""
    hits = {}
    for doc, split in zip(tqdm(docs, desc="decontaminate", unit="doc", mininterval=2), splits, strict=True):
        if split == "train" and (groups := index.matches(doc["text"])):
            hits[doc["id"]] = groups
    return hits


def dedup_corpus(clean_dir: Path, raw_dir: Path, out_dir: Path, params: DedupParams,
                 eval_sources: dict[str, str]) -> dict[str, Any]:
    """Exact + near dedup, decontamination and the split; writes `out_dir/{train,val,test}/` shards,
    `clusters.jsonl`, `decontamination.json` and `cluster_sizes.csv`; returns the stage metrics."""
    docs = load_clean_documents(clean_dir)
    exact, labels = find_duplicates(compute_signatures(clean_dir, params), params)
    clusters = choose_survivors(docs, exact, labels, params.source_priority)
    removed = {doc_id for cluster in clusters for doc_id in cluster["removed"]}
    survivors = [doc for doc in docs if doc["id"] not in removed]
    splits = [split_of(doc, params.val_fraction) for doc in survivors]
    index = ContaminationIndex(evaluation_texts(raw_dir, eval_sources), params.decontaminate_ngram)
    contaminated = decontaminate(survivors, splits, index)
    kept = [(doc, split) for doc, split in zip(survivors, splits, strict=True) if doc["id"] not in contaminated]
    for split in ("train", "val", "test"):
        write_sharded(out_dir / split, "part", (d for d, s in kept if s == split), params.shard_docs)
    write_jsonl(out_dir / "clusters.jsonl", clusters)
    atomic_write_json(out_dir / "decontamination.json", contaminated)
    _write_histogram(out_dir / "cluster_sizes.csv", cluster_size_histogram(clusters))
    return _dedup_metrics(docs, exact, labels, contaminated, kept, index)


def _write_histogram(path: Path, rows: list[dict[str, int]]) -> None:
    lines = ["cluster_size,clusters"] + [f"{r['cluster_size']},{r['clusters']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dedup_metrics(docs: list[dict[str, str]], exact: np.ndarray, labels: np.ndarray,
                   contaminated: dict[str, list[str]], kept: list[tuple[dict[str, str], str]],
                   index: ContaminationIndex) -> dict[str, Any]:
    exact_groups, clusters = len(np.unique(exact)), len(np.unique(labels))
    by_group = Counter(group for groups in contaminated.values() for group in groups)
    return {
        "docs_in": len(docs),
        "exact_duplicates_removed": len(docs) - exact_groups,
        "near_duplicates_removed": exact_groups - clusters,
        "decontaminated": len(contaminated),
        "decontaminated_by": dict(sorted(by_group.items())),
        "eval_ngrams": len(index),
        "docs_out": {split: sum(s == split for _, s in kept) for split in ("train", "val", "test")},
        "bytes_out": sum(len(d["text"].encode("utf-8")) for d, _ in kept),
    }
