"""The `dedup` stage: exact and MinHash-LSH near-duplicate removal across all sources, then the split.

Signatures are computed in chunks of documents in worker processes (datasketch MinHash `update_batch`
over shingle hashes built in numpy from xxhash word hashes); only the LSH bucket join and the final
split are global. Within a duplicate cluster one document is kept deterministically: held-out splits
first (so dedup never eats evaluation text), then the configured source priority, then the smallest
id. Texts are never all in memory: the survivors are streamed shard by shard into the split folders.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
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
from scratchlm.data.parallel import Executor, LocalExecutor
from scratchlm.io import atomic_write_json, document_shards, read_documents, write_jsonl, write_sharded

SCHEME = "affine32"  # datasketch ≥ 2 names the permutation scheme; signatures are uint32
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}


def exact_key(words: list[str]) -> str:
    """Texts equal up to case, punctuation and spacing share a key."""
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).hexdigest()


SHINGLE_PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio): order-sensitive mixing


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


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> Any:
    """The MinHash permutations of (num_perm, seed): drawing them is 80% of a short document's cost."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations


def signatures(docs_words: list[list[str]], params: DedupParams) -> np.ndarray:
    """(docs, num_perm) uint32: datasketch's MinHash of each document's shingle hashes.

    One MinHash is cleared and reused for every document (its constructor costs as much as hashing a
    short document), and `hashfunc=int` because the shingles are hashed already.
    """
    num_perm = params.num_bands * params.rows_per_band
    minhash = MinHash(num_perm=num_perm, seed=params.seed, hashfunc=int, scheme=SCHEME,
                      permutations=_permutations(num_perm, params.seed))
    memo: dict[str, int] = {}  # word hashes, shared by the documents
    out = np.empty((len(docs_words), num_perm), dtype=np.uint32)
    for row, words in enumerate(docs_words):
        minhash.clear()
        minhash.update_batch(shingle_hashes(words, params.shingle_words, memo))
        out[row] = minhash.hashvalues
    return out


@dataclass
class ShardSignatures:
    ids: list[str]
    keys: list[str]
    signatures: np.ndarray  # (docs, num_perm) uint32


CHUNK_DOCS = 128  # signature jobs: small enough that one long shard (WikiText) does not hold up the pool


@functools.lru_cache(maxsize=1)
def _shard_texts(path: Path, version: tuple[int, int]) -> tuple[list[str], list[str]]:
    """(ids, texts) of one shard. The pool hands a shard's chunks out in order, so each worker reads a
    shard once for all the chunks it gets, and holds one shard at a time. `version` (mtime, size)
    keeps a rewritten shard from being served from the cache."""
    table = pq.read_table(path, columns=["id", "text"])
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def _chunk_signatures(job: tuple[Path, int, DedupParams]) -> ShardSignatures:
    path, start, params = job
    stat = path.stat()
    ids, texts = _shard_texts(path, (stat.st_mtime_ns, stat.st_size))
    ids, texts = ids[start : start + CHUNK_DOCS], texts[start : start + CHUNK_DOCS]
    words = [words_of(t) for t in texts]  # once per document: the exact key and the shingles share them
    return ShardSignatures(ids, [exact_key(w) for w in words], signatures(words, params))


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


def compute_signatures(clean_dir: Path, params: DedupParams, executor: Executor | None = None) -> ShardSignatures:
    """Signatures and exact keys of every clean document, in shard order (chunks on `executor`)."""
    jobs = [(path.absolute(), start, params) for path in document_shards(clean_dir)
            for start in range(0, max(1, pq.ParquetFile(path).metadata.num_rows), CHUNK_DOCS)]
    executor = executor or LocalExecutor(params.num_proc)
    parts = list(tqdm(executor.map(_chunk_signatures, jobs), total=len(jobs), desc="dedup signatures",
                      unit="chunk"))
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


def load_document_keys(clean_dir: Path) -> list[dict[str, str]]:
    """id, source and meta of every clean document in shard order (the signatures' order), without
    the text: what choosing survivors and splitting need, a small fraction of the corpus in memory."""
    columns = ["id", "source", "meta"]
    return [row for path in document_shards(clean_dir) for row in pq.read_table(path, columns=columns).to_pylist()]


def stream_split(clean_dir: Path, split_by_id: dict[str, str], split: str) -> Iterator[dict[str, str]]:
    """The surviving documents of one split, read shard by shard: one shard in memory at a time."""
    for path in document_shards(clean_dir):
        for doc in read_documents(path):
            if split_by_id.get(doc["id"]) == split:
                yield doc


@dataclass
class SplitWriter:
    """Writes each split's survivors, dropping training documents that overlap the evaluation sets."""

    index: ContaminationIndex
    contaminated: dict[str, list[str]]
    docs_out: Counter
    bytes_out: int = 0

    def kept(self, docs: Iterable[dict[str, str]], split: str, total: int) -> Iterator[dict[str, str]]:
        for doc in tqdm(docs, desc=f"dedup write {split}", unit="doc", total=total, mininterval=2):
            if split == "train" and (groups := self.index.matches(doc["text"])):
                self.contaminated[doc["id"]] = groups
                continue
            self.docs_out[split] += 1
            self.bytes_out += len(doc["text"].encode("utf-8"))
            yield doc


def dedup_corpus(clean_dir: Path, raw_dir: Path, out_dir: Path, params: DedupParams,
                 eval_sources: dict[str, str], executor: Executor | None = None) -> dict[str, Any]:
    """Exact + near dedup, decontamination and the split; writes `out_dir/{train,val,test}/` shards,
    `clusters.jsonl`, `decontamination.json` and `cluster_sizes.csv`; returns the stage metrics.

    Memory: signatures and id/source/meta for every document; texts are read a shard at a time.
    """
    keys = load_document_keys(clean_dir)
    sigs = compute_signatures(clean_dir, params, executor)
    if sigs.ids != [k["id"] for k in keys]:
        raise RuntimeError(f"{clean_dir}: changed while dedup read it (signatures and documents disagree)")
    exact, labels = find_duplicates(sigs, params)
    clusters = choose_survivors(keys, exact, labels, params.source_priority)
    removed = {doc_id for cluster in clusters for doc_id in cluster["removed"]}
    split_by_id = {k["id"]: split_of(k, params.val_fraction) for k in keys if k["id"] not in removed}
    index = ContaminationIndex(evaluation_texts(raw_dir, eval_sources), params.decontaminate_ngram)
    writer = SplitWriter(index, {}, Counter())
    sizes = Counter(split_by_id.values())
    for split in ("train", "val", "test"):
        docs = writer.kept(stream_split(clean_dir, split_by_id, split), split, sizes[split])
        write_sharded(out_dir / split, "part", docs, params.shard_docs)
    contaminated = dict(sorted(writer.contaminated.items()))
    write_jsonl(out_dir / "clusters.jsonl", clusters)
    atomic_write_json(out_dir / "decontamination.json", contaminated)
    _write_histogram(out_dir / "cluster_sizes.csv", cluster_size_histogram(clusters))
    return _dedup_metrics(len(keys), exact, labels, contaminated, writer, index)


def _write_histogram(path: Path, rows: list[dict[str, int]]) -> None:
    lines = ["cluster_size,clusters"] + [f"{r['cluster_size']},{r['clusters']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dedup_metrics(docs_in: int, exact: np.ndarray, labels: np.ndarray, contaminated: dict[str, list[str]],
                   writer: SplitWriter, index: ContaminationIndex) -> dict[str, Any]:
    exact_groups, clusters = len(np.unique(exact)), len(np.unique(labels))
    by_group = Counter(group for groups in contaminated.values() for group in groups)
    return {
        "docs_in": docs_in,
        "exact_duplicates_removed": docs_in - exact_groups,
        "near_duplicates_removed": exact_groups - clusters,
        "decontaminated": len(contaminated),
        "decontaminated_by": dict(sorted(by_group.items())),
        "eval_ngrams": len(index),
        "docs_out": {split: writer.docs_out[split] for split in ("train", "val", "test")},
        "bytes_out": writer.bytes_out,
    }
