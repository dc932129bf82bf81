"""The `dedup` stage: exact and MinHash-LSH near-duplicate removal across all sources, then the split.

Everything global is formulated to scale with the corpus on disk, not in one process's memory:

1. **Signatures, shard-parallel.** Each job (128 documents of one clean shard, on any executor) computes
   the documents' exact key and MinHash signature (datasketch, over 5-word shingle hashes built in
   numpy) and hands back only the exact keys and one 64-bit key per LSH band. The driver appends the
   band keys to one file per band.
2. **LSH, band by band.** Each band's file is sorted on its own; documents sharing a key in any band are
   candidate pairs (one representative per exact-duplicate group takes part).
3. **Confirmation.** A candidate pair is a near duplicate when the exact Jaccard similarity of the two
   documents' shingle sets is at least `jaccard_threshold`: the shingles of the documents in candidate
   pairs alone are recomputed, shard by shard. Bands and rows are chosen so that a pair at
   `jaccard_threshold + 0.03` fails to become a candidate with probability at most `miss_rate`
   (`band_shape`); the exact check then keeps precision whatever the candidates.
4. **Clusters** are the connected components of the exact groups and confirmed pairs, over the documents
   in them only. In each, one document survives: held-out splits first (dedup never eats evaluation
   text), then the configured source priority, then the smallest id.
5. **Decontamination, shard-parallel.** The evaluation n-grams are one sorted array (`ContaminationIndex`)
   saved beside the work; each job looks up one shard's training documents.
6. **Writing, streamed.** One pass over the clean shards writes every survivor to its split (a stable
   hash of its id), one shard in memory at a time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash
from tqdm import tqdm

from scratchlm.config import DedupParams
from scratchlm.data.decontaminate import ContaminationIndex, evaluation_texts
from scratchlm.data.filters import words_of
from scratchlm.data.parallel import Executor, LocalExecutor
from scratchlm.io import atomic_write_json, document_shards, read_documents, write_documents, write_jsonl

SCHEME = "affine32"  # datasketch ≥ 2 names the permutation scheme; signatures are uint32
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}
SPLITS = ("train", "val", "test")
MARGIN = 0.03  # `miss_rate` is promised for pairs at jaccard_threshold + MARGIN and above
CHUNK_DOCS = 128  # signature jobs: small enough that one long shard (WikiText) does not hold up the pool
ALL_PAIRS_UP_TO = 32  # a bucket this size or smaller gives every pair; a larger one a star and a chain
WORK = ".work"  # scratch space inside the stage's temporary output folder, removed before it is swapped in


def exact_key(words: list[str]) -> bytes:
    """Texts equal up to case, punctuation and spacing share a key (16 bytes)."""
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest()


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


@dataclass
class ChunkKeys:
    """What a signature job returns: the documents' exact keys and LSH band keys (not the signatures)."""

    exact: list[bytes]
    bands: np.ndarray  # (docs, bands) uint64


@functools.lru_cache(maxsize=1)
def _shard_texts(path: Path, version: tuple[int, int]) -> list[str]:
    """The texts of one shard. The pool hands a shard's chunks out in order, so each worker reads a shard
    once for all the chunks it gets, and holds one shard at a time. `version` (mtime, size) keeps a
    rewritten shard from being served from the cache."""
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def _chunk_keys(job: tuple[Path, int, DedupParams]) -> ChunkKeys:
    path, start, params = job
    stat = path.stat()
    texts = _shard_texts(path, (stat.st_mtime_ns, stat.st_size))[start : start + CHUNK_DOCS]
    words = [words_of(t) for t in texts]  # once per document: the exact key and the shingles share them
    bands, rows = band_shape(params)
    return ChunkKeys([exact_key(w) for w in words], band_keys(signatures(words, params, bands * rows), bands, rows))


# ---------------------------------------------------------------------------------- the corpus, on disk


@dataclass
class Corpus:
    """The clean shards in document order, and what the signature pass left on disk in `work`."""

    shards: list[Path]
    sizes: list[int]  # documents per shard
    work: Path
    bands: int

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum([0, *self.sizes])

    def band(self, band: int) -> np.ndarray:
        return np.fromfile(self.work / f"band-{band:03d}.u64", dtype=np.uint64)

    def locate(self, indices: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """{shard: [(row in shard, document index)]} of the given document indices."""
        shard_of = np.searchsorted(self.starts, indices, side="right") - 1
        where: dict[int, list[tuple[int, int]]] = {}
        for index, shard in zip(indices.tolist(), shard_of.tolist(), strict=True):
            where.setdefault(shard, []).append((index - int(self.starts[shard]), index))
        return where


def sign_corpus(clean_dir: Path, work: Path, params: DedupParams, executor: Executor) -> tuple[Corpus, np.ndarray]:
    """Run the signature jobs; band keys go to one file per band. Returns the corpus and every document's
    exact-duplicate group (documents of one group share an exact key)."""
    shards = document_shards(clean_dir)
    sizes = [pq.ParquetFile(path).metadata.num_rows for path in shards]
    jobs = [(path.absolute(), start, params) for path, rows in zip(shards, sizes, strict=True)
            for start in range(0, max(1, rows), CHUNK_DOCS)]
    bands, _ = band_shape(params)
    work.mkdir(parents=True, exist_ok=True)
    files = [open(work / f"band-{band:03d}.u64", "wb") for band in range(bands)]  # noqa: SIM115 - closed below
    exact: list[bytes] = []
    try:
        for chunk in tqdm(executor.map(_chunk_keys, jobs), total=len(jobs), desc="dedup signatures", unit="chunk"):
            exact.extend(chunk.exact)
            for band, handle in enumerate(files):
                chunk.bands[:, band].tofile(handle)
    finally:
        for handle in files:
            handle.close()
    _, groups = np.unique(np.array(exact, dtype="S16"), return_inverse=True) if exact else (None, np.zeros(0, int))
    return Corpus(shards, sizes, work, bands), groups.astype(np.int64)


def bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """(pairs, 2) indices into `keys` that share a key: every pair of a small bucket, a star and a chain
    through a large one (enough to connect it; the exact check confirms each edge)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    pairs = []
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
        members = np.sort(order[start:stop])
        if len(members) < 2:
            continue
        if len(members) <= ALL_PAIRS_UP_TO:
            i, j = np.triu_indices(len(members), k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
        else:
            pairs.append(np.stack([np.full(len(members) - 1, members[0]), members[1:]], axis=1))
            pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def candidate_pairs(corpus: Corpus, representatives: np.ndarray) -> np.ndarray:
    """Candidate pairs of document indices (i < j), from each band grouped on its own."""
    found = []
    for band in tqdm(range(corpus.bands), desc="dedup lsh", unit="band", mininterval=2):
        pairs = bucket_pairs(corpus.band(band)[representatives])
        found.append(representatives[pairs])
    pairs = np.sort(np.concatenate(found), axis=1) if found else np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def shingle_sets(corpus: Corpus, indices: np.ndarray, params: DedupParams) -> dict[int, np.ndarray]:
    """The unique shingle hashes of the given documents, read shard by shard (only the shards they are in)."""
    sets: dict[int, np.ndarray] = {}
    for shard, rows in corpus.locate(np.unique(indices)).items():
        texts = pq.read_table(corpus.shards[shard], columns=["text"]).column("text").to_pylist()
        memo: dict[str, int] = {}
        for row, index in rows:
            sets[index] = np.unique(np.array(shingle_hashes(words_of(texts[row]), params.shingle_words, memo),
                                             dtype=np.uint32))
    return sets


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / (len(a) + len(b) - shared)


def confirmed_pairs(corpus: Corpus, candidates: np.ndarray, params: DedupParams) -> np.ndarray:
    """The candidates whose exact shingle-set Jaccard similarity reaches `jaccard_threshold`."""
    if not len(candidates):
        return candidates
    sets = shingle_sets(corpus, candidates.ravel(), params)
    keep = [jaccard(sets[i], sets[j]) >= params.jaccard_threshold for i, j in candidates.tolist()]
    return candidates[np.array(keep, dtype=bool)]


def clusters_of(edges: np.ndarray) -> dict[int, list[int]]:
    """Connected components of the duplicate graph, over the documents in an edge only: {root: members}."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges.tolist():
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    return {root: sorted(group) for root, group in members.items()}


def exact_edges(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edges joining every document to the first of its exact group, the first document of each group)."""
    if not len(groups):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, first = np.unique(groups, return_index=True)
    heads = first[groups]
    copies = np.flatnonzero(heads != np.arange(len(groups)))
    return np.stack([heads[copies], copies], axis=1), np.sort(first)


# ---------------------------------------------------------------------------------- survivors and the split


def keep_order(doc: dict[str, str], priority: list[str]) -> tuple[int, int, str]:
    """Sort key deciding which member of a duplicate cluster survives."""
    split = json.loads(doc["meta"]).get("split", "train")
    rank = priority.index(doc["source"]) if doc["source"] in priority else len(priority)
    return SPLIT_RANK.get(split, 2), rank, doc["id"]


def document_keys(corpus: Corpus, indices: list[int]) -> dict[int, dict[str, str]]:
    """id, source and meta of the given documents (the members of clusters only), shard by shard."""
    keys: dict[int, dict[str, str]] = {}
    for shard, rows in corpus.locate(np.array(sorted(indices), dtype=np.int64)).items():
        table = pq.read_table(corpus.shards[shard], columns=["id", "source", "meta"]).to_pylist()
        keys.update({index: table[row] for row, index in rows})
    return keys


def choose_survivors(corpus: Corpus, clusters: dict[int, list[int]], groups: np.ndarray,
                     priority: list[str]) -> list[dict[str, Any]]:
    """For each cluster: the kept id, the removed ids, and whether it is exact (one exact group) or near."""
    keys = document_keys(corpus, [index for members in clusters.values() for index in members])
    out = []
    for members in clusters.values():
        ordered = sorted(members, key=lambda i: keep_order(keys[i], priority))
        kind = "exact" if len({int(groups[i]) for i in members}) == 1 else "near"
        out.append({"kept": keys[ordered[0]]["id"], "removed": [keys[i]["id"] for i in ordered[1:]], "kind": kind})
    return sorted(out, key=lambda c: c["kept"])


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


@functools.lru_cache(maxsize=1)
def _index(path: Path, version: tuple[int, int]) -> ContaminationIndex:
    return ContaminationIndex.load(path)


def _contaminated(job: tuple[Path, Path, float]) -> dict[str, list[str]]:
    """{id: evaluation groups} of one shard's training documents that share an n-gram with an evaluation item."""
    shard, index_file, val_fraction = job
    stat = index_file.stat()
    index = _index(index_file, (stat.st_mtime_ns, stat.st_size))
    found = {}
    for doc in read_documents(shard):
        if split_of(doc, val_fraction) == "train" and (groups := index.matches(doc["text"])):
            found[doc["id"]] = groups
    return found


class SplitShards:
    """Writes each split's documents as `part-00000.parquet`, … of at most `shard_docs`, in the order given."""

    def __init__(self, out_dir: Path, shard_docs: int) -> None:
        self.out_dir, self.shard_docs = out_dir, shard_docs
        self.pending: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
        self.written = Counter[str]()
        self.docs, self.bytes = Counter[str](), 0

    def add(self, split: str, doc: dict[str, str]) -> None:
        self.pending[split].append(doc)
        self.docs[split] += 1
        self.bytes += len(doc["text"].encode("utf-8"))
        if len(self.pending[split]) == self.shard_docs:
            self._flush(split)

    def _flush(self, split: str) -> None:
        (self.out_dir / split).mkdir(parents=True, exist_ok=True)
        write_documents(self.out_dir / split / f"part-{self.written[split]:05d}.parquet", self.pending[split])
        self.written[split] += 1
        self.pending[split] = []

    def close(self) -> None:
        for split in SPLITS:
            if self.pending[split] or not self.written[split]:  # an empty split is one empty shard
                self._flush(split)


def write_splits(corpus: Corpus, removed: set[str], contaminated: dict[str, list[str]], out_dir: Path,
                 params: DedupParams) -> SplitShards:
    """One streamed pass: every surviving, uncontaminated document to its split."""
    writer = SplitShards(out_dir, params.shard_docs)
    for shard in tqdm(corpus.shards, desc="dedup write", unit="shard", mininterval=2):
        for doc in read_documents(shard):
            if doc["id"] in removed or doc["id"] in contaminated:
                continue
            writer.add(split_of(doc, params.val_fraction), doc)
    writer.close()
    return writer


def dedup_corpus(clean_dir: Path, evaluation: list[Path], out_dir: Path, params: DedupParams,
                 executor: Executor | None = None) -> dict[str, Any]:
    """Exact + near dedup, decontamination and the split; writes `out_dir/{train,val,test}/` shards,
    `clusters.jsonl`, `decontamination.json` and `cluster_sizes.csv`; returns the stage metrics.

    Memory: the band keys of one band, the exact keys, and the documents in duplicate clusters; texts
    are read a shard at a time.
    """
    executor = executor or LocalExecutor(params.num_proc)
    work, clock = out_dir / WORK, Clock()
    corpus, groups = clock("signatures", sign_corpus, clean_dir, work, params, executor)
    copies, heads = exact_edges(groups)
    candidates = clock("lsh", candidate_pairs, corpus, heads)
    near = clock("confirm", confirmed_pairs, corpus, candidates, params)
    clusters = clock("clusters", lambda: choose_survivors(corpus, clusters_of(np.concatenate([copies, near])), groups,
                                                          params.source_priority))
    removed = {doc_id for cluster in clusters for doc_id in cluster["removed"]}
    index = clock("decontaminate", ContaminationIndex.build, evaluation_texts(evaluation),
                  params.decontaminate_ngram)
    index.save(work / "contamination.npz")
    jobs = [(shard.absolute(), (work / "contamination.npz").absolute(), params.val_fraction) for shard in corpus.shards]
    contaminated = clock("decontaminate", lambda: {doc_id: groups_ for found in executor.map(_contaminated, jobs)
                                                   for doc_id, groups_ in found.items() if doc_id not in removed})
    writer = clock("write", write_splits, corpus, removed, contaminated, out_dir, params)
    shutil.rmtree(work)
    contaminated = dict(sorted(contaminated.items()))
    write_jsonl(out_dir / "clusters.jsonl", clusters)
    atomic_write_json(out_dir / "decontamination.json", contaminated)
    _write_histogram(out_dir / "cluster_sizes.csv", cluster_size_histogram(clusters))
    docs_in = int(sum(corpus.sizes))
    exact_removed = len(copies)
    return {
        "docs_in": docs_in,
        "exact_duplicates_removed": exact_removed,
        "near_duplicates_removed": len(removed) - exact_removed,
        "decontaminated": len(contaminated),
        "decontaminated_by": dict(sorted(Counter(g for gs in contaminated.values() for g in gs).items())),
        "eval_ngrams": len(index),
        "docs_out": {split: writer.docs[split] for split in SPLITS},
        "bytes_out": writer.bytes,
        "lsh": {**dict(zip(("bands", "rows"), band_shape(params), strict=True)),
                "candidate_pairs": len(candidates), "confirmed_pairs": len(near)},
        "seconds": clock.seconds,  # a figure of the machine: the stage moves it to its run record
    }


class Clock:
    """Wall seconds per phase (parallel on the executor: signatures, decontaminate; one process: the rest)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        result = fn(*args)
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - started, 3)
        return result


def _write_histogram(path: Path, rows: list[dict[str, int]]) -> None:
    lines = ["cluster_size,clusters"] + [f"{r['cluster_size']},{r['clusters']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
