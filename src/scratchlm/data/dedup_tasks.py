"""The dedup stage's steps as executor tasks: each one job in, files in the work folder out.

Every step whose work grows with the corpus is here, one module-level function per step, so the same
code runs in a local process pool or as Ray tasks on many nodes (`scratchlm.data.parallel`). Tasks hand
each other data through files (`scratchlm.data.shuffle`), never through the driver:

    sign (one task per chunk of a shard)   → band rows by partition, each document's survivor key
    group (one task per partition)         → candidate pairs by partition, exact-duplicate edges
    pairs (one task per partition)         → the partition's unique candidate pairs and their documents
    shingles (one task per shard)          → the shingle sets of that shard's candidate documents
    confirm (one task per partition)       → the pairs whose exact Jaccard similarity reaches the threshold
    members (one task per partition)       → (cluster root, member) rows by partition
    survivors (one task per partition)     → the partition's clusters, sorted, and its removed documents
    plan (one task per shard)              → each row's split (or dropped), decontamination
    write (one task per output shard)      → a split's parquet shard

A bucket of a band lives in one partition (the partition is a hash of band and key), and an exact
duplicate group shares every band key, so it is whole in each band's bucket: the group task sees it,
keeps its first document as the bucket's representative and, in band 0, emits the group's edges.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scratchlm.config.data import DedupParams
from scratchlm.data.decontaminate import ContaminationIndex
from scratchlm.data.filters import words_of
from scratchlm.data.minhash import band_keys, band_shape, exact_key, jaccard, shingle_set, signatures
from scratchlm.data.shuffle import hash_partition, pair_partition, read_partition, rows_in_range, write_partitioned
from scratchlm.data.split import SPLIT_RANK, SPLITS, split_of
from scratchlm.io import read_documents, write_documents

ROW = np.dtype([("band", "<u2"), ("key", "<u8"), ("x0", "<u8"), ("x1", "<u8"), ("doc", "<i8")])
NO_ROWS = np.zeros(0, dtype=ROW)
NO_PAIRS = np.zeros((0, 2), dtype=np.int64)
ALL_PAIRS_UP_TO = 32  # a bucket this size or smaller gives every pair; a larger one a star and a chain
DROPPED = 255  # a plan code: the row is removed (a duplicate) or contaminated


@dataclass(frozen=True)
class Layout:
    """Where each step's files are in the work folder (absolute: tasks may run on other nodes)."""

    work: Path
    partitions: int
    sign_tasks: int

    def sig(self, task: int) -> Path:
        return self.work / "sig" / f"{task:06d}.npy"

    def keys(self, task: int) -> Path:
        return self.work / "keys" / f"{task:06d}.arrow"

    def lsh(self, part: int) -> Path:
        return self.work / "lsh" / f"{part:05d}.npy"

    def exact(self, part: int) -> Path:
        return self.work / "exact" / f"{part:05d}.npy"

    def pairs(self, part: int) -> Path:
        return self.work / "pairs" / f"{part:05d}.npy"

    def needed(self, part: int) -> Path:
        return self.work / "needed" / f"{part:05d}.npy"

    def shingles(self, shard: int) -> Path:
        return self.work / "shingles" / f"{shard:05d}.npy"

    def confirmed(self, part: int) -> Path:
        return self.work / "confirmed" / f"{part:05d}.npy"

    def members(self, part: int) -> Path:
        """Written by the members tasks 0 … partitions-1, and by the driver as `partitions` (near clusters)."""
        return self.work / "members" / f"{part:05d}.npy"

    @property
    def roots(self) -> Path:
        return self.work / "roots.npy"

    def clusters(self, part: int) -> Path:
        return self.work / "clusters" / f"{part:05d}.jsonl"

    def removed(self, part: int) -> Path:
        return self.work / "removed" / f"{part:05d}.npy"

    def plan(self, shard: int) -> Path:
        return self.work / "plan" / f"{shard:05d}.npy"

    @property
    def shard_starts(self) -> Path:
        """The global index of each shard's first document, then the total (the driver writes it)."""
        return self.work / "shard_starts.npy"

    @property
    def task_starts(self) -> Path:
        """The global index of each sign task's first document, then the total."""
        return self.work / "task_starts.npy"


@dataclass(frozen=True)
class Shard:
    """One clean shard: its path (absolute), its index and the global index of its first document."""

    path: Path
    index: int
    start: int
    size: int


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


# ---------------------------------------------------------------------------------- sign


@functools.lru_cache(maxsize=1)
def _shard_table(path: Path, version: tuple[int, int]) -> pa.Table:
    """The shard's columns. The pool hands a shard's chunks out in order, so a worker reads each shard once
    for its chunks; `version` (mtime, size) keeps a rewritten shard from being served from the cache."""
    return pq.read_table(path, columns=["id", "source", "meta", "text"])


def survivor_order(meta: str, source: str, priority: list[str]) -> int:
    """The rank deciding which member of a duplicate cluster survives (lowest first; ties by id): held-out
    splits first (dedup never eats evaluation text), then the configured source priority."""
    split = json.loads(meta).get("split", "train")
    rank = priority.index(source) if source in priority else len(priority)
    return SPLIT_RANK.get(split, 2) * 65536 + rank


@dataclass(frozen=True)
class SignJob:
    shard: Shard
    offset: int  # first row in the shard
    count: int
    task: int
    layout: Layout
    params: DedupParams


def sign(job: SignJob) -> int:
    """Exact key and LSH band keys of a chunk's documents, as band rows bucketed by partition; and each
    document's survivor order and id (read back only for the members of clusters). Returns the rows' count."""
    stat = job.shard.path.stat()
    table = _shard_table(job.shard.path, (stat.st_mtime_ns, stat.st_size)).slice(job.offset, job.count)
    words = [words_of(text) for text in table.column("text").to_pylist()]  # once: the exact key and shingles
    bands, rows = band_shape(job.params)
    keys = band_keys(signatures(words, job.params, bands * rows), bands, rows)
    exact = np.frombuffer(b"".join(exact_key(w) for w in words), dtype="<u8").reshape(-1, 2)
    out = np.empty(len(words) * bands, dtype=ROW)
    out["band"] = np.tile(np.arange(bands, dtype=np.uint16), len(words))
    out["key"] = keys.ravel()
    out["x0"], out["x1"] = np.repeat(exact[:, 0], bands), np.repeat(exact[:, 1], bands)
    out["doc"] = np.repeat(np.arange(len(words), dtype=np.int64) + job.shard.start + job.offset, bands)
    write_partitioned(job.layout.sig(job.task), out, bucket_partition(out, job.layout.partitions),
                      job.layout.partitions)
    priority = job.params.source_priority
    order = [survivor_order(meta, source, priority) for meta, source in
             zip(table.column("meta").to_pylist(), table.column("source").to_pylist(), strict=True)]
    _write_keys(job.layout.keys(job.task), pa.table({"order": pa.array(order, pa.uint32()), "id": table.column("id")}))
    return len(out)


def bucket_partition(rows: np.ndarray, partitions: int) -> np.ndarray:
    """A band row's partition: all rows of one (band, key) bucket land in the same one."""
    with np.errstate(over="ignore"):
        return hash_partition(rows["key"] + rows["band"].astype(np.uint64), partitions)


def _write_keys(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


# ---------------------------------------------------------------------------------- group (LSH)


@dataclass(frozen=True)
class PartJob:
    """A global step's task: one partition of the work in `layout`."""

    part: int
    layout: Layout
    params: DedupParams


def group(job: PartJob) -> int:
    """Group the partition's band rows into buckets: exact duplicates in a bucket collapse to their first
    document (band 0 gives their edges), and each bucket's representatives give candidate pairs (every pair
    of a small bucket, a star and a chain through a large one: enough to connect it). Returns the count of
    exact-duplicate edges."""
    layout = job.layout
    rows = read_partition([layout.sig(t) for t in range(layout.sign_tasks)], job.part, NO_ROWS)
    rows = rows[np.lexsort((rows["doc"], rows["x1"], rows["x0"], rows["key"], rows["band"]))]
    first = _starts_of(rows, ("band", "key", "x0", "x1"))
    heads = rows["doc"][first][np.cumsum(first) - 1]
    copies = ~first & (rows["band"] == 0)
    edges = np.stack([heads[copies], rows["doc"][copies]], axis=1)
    _save(layout.exact(job.part), edges)
    reps = rows[first]
    reps = reps[np.lexsort((reps["doc"], reps["key"], reps["band"]))]
    pairs = bucket_pairs(reps["doc"], _starts_of(reps, ("band", "key")))
    write_partitioned(layout.lsh(job.part), pairs, pair_partition(pairs, layout.partitions), layout.partitions)
    return len(edges)


def _starts_of(rows: np.ndarray, fields: tuple[str, ...]) -> np.ndarray:
    """A boolean mask of the rows (sorted on `fields`) that start a new run of equal `fields`."""
    first = np.ones(len(rows), dtype=bool)
    if len(rows) > 1:
        first[1:] = np.logical_or.reduce([rows[name][1:] != rows[name][:-1] for name in fields])
    return first


def bucket_pairs(docs: np.ndarray, first: np.ndarray) -> np.ndarray:
    """(pairs, 2) of documents (i < j) sharing a bucket; `docs` sorted within each bucket, `first` marks
    where each bucket starts. Buckets of two (most of them) are paired at once, larger ones one by one."""
    bounds = np.r_[np.flatnonzero(first), len(docs)]
    sizes = np.diff(bounds)
    twos = bounds[:-1][sizes == 2]
    pairs = [np.stack([docs[twos], docs[twos + 1]], axis=1)]
    for start, size in zip(bounds[:-1][sizes > 2].tolist(), sizes[sizes > 2].tolist(), strict=True):
        members = docs[start : start + size]
        if size <= ALL_PAIRS_UP_TO:
            i, j = np.triu_indices(size, k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
        else:
            pairs.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
            pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else NO_PAIRS


# ---------------------------------------------------------------------------------- confirm


def unique_pairs(job: PartJob) -> int:
    """The partition's candidate pairs from every group task, each once (a pair found in several bands
    lands in one partition), and the documents they name. Returns the count of pairs."""
    layout = job.layout
    pairs = read_partition([layout.lsh(p) for p in range(layout.partitions)], job.part, NO_PAIRS)
    if len(pairs):
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        pairs = pairs[np.r_[True, np.any(pairs[1:] != pairs[:-1], axis=1)]]
    _save(layout.pairs(job.part), pairs)
    _save(layout.needed(job.part), np.unique(pairs.ravel()).astype(np.int64))
    return len(pairs)


@dataclass(frozen=True)
class ShardJob:
    shard: Shard
    layout: Layout
    params: DedupParams
    index_file: Path | None = None  # plan: the decontamination index


def shingles(job: ShardJob) -> int:
    """The shingle sets of this shard's documents that some partition's pairs name, read from the shard
    once: `<shard>.npy` (the values), `.docs.npy` (which documents), `.off.npy` (where each set starts)."""
    low, high = job.shard.start, job.shard.start + job.shard.size
    layout = job.layout
    docs = np.unique(np.concatenate([rows_in_range(layout.needed(p), low, high) for p in range(layout.partitions)]))
    sets: list[np.ndarray] = []
    if len(docs):
        texts = pq.read_table(job.shard.path, columns=["text"]).column("text")
        memo: dict[str, int] = {}
        sets = [shingle_set(words_of(texts[int(d) - low].as_py()), job.params.shingle_words, memo) for d in docs]
    path = layout.shingles(job.shard.index)
    _save(path, np.concatenate(sets) if sets else np.zeros(0, np.uint32))
    np.save(path.with_suffix(".docs.npy"), docs.astype(np.int64))
    np.save(path.with_suffix(".off.npy"), np.cumsum([0, *map(len, sets)]).astype(np.int64))
    return len(docs)


def confirm(job: PartJob) -> int:
    """The partition's pairs whose exact shingle-set Jaccard similarity reaches `jaccard_threshold`: each
    task reads only the shingle sets of its own pairs' documents. Returns the count confirmed."""
    layout = job.layout
    pairs, docs = np.load(layout.pairs(job.part)), np.load(layout.needed(job.part))
    sets = _shingle_sets(layout, docs, np.load(layout.shard_starts))
    keep = np.array([jaccard(sets[i], sets[j]) >= job.params.jaccard_threshold for i, j in pairs.tolist()],
                    dtype=bool)
    confirmed = pairs[keep] if len(pairs) else NO_PAIRS
    _save(layout.confirmed(job.part), confirmed)
    return len(confirmed)


def _shingle_sets(layout: Layout, docs: np.ndarray, starts: np.ndarray) -> dict[int, np.ndarray]:
    """{document: shingle set} from the shingle files of the shards the documents are in."""
    sets: dict[int, np.ndarray] = {}
    shard_of = np.searchsorted(starts, docs, side="right") - 1
    for shard in np.unique(shard_of).tolist():
        path = layout.shingles(shard)
        values, known = np.load(path, mmap_mode="r"), np.load(path.with_suffix(".docs.npy"))
        bounds = np.load(path.with_suffix(".off.npy"))
        for doc in docs[shard_of == shard].tolist():
            at = int(np.searchsorted(known, doc))
            sets[doc] = np.array(values[bounds[at] : bounds[at + 1]])
    return sets


# ---------------------------------------------------------------------------------- clusters and survivors


def members(job: PartJob) -> int:
    """(root, member) rows of the partition's exact groups: the root is the smallest document of the near
    cluster the group's head is in (the `roots` file the driver wrote), else the head itself."""
    layout = job.layout
    edges = np.load(layout.exact(job.part))
    roots = np.load(layout.roots, mmap_mode="r")
    heads = np.unique(edges[:, 0])
    rows = np.concatenate([np.stack([root_of(roots, edges[:, 0]), edges[:, 1]], axis=1),
                           np.stack([root_of(roots, heads), heads], axis=1)]) if len(edges) else NO_PAIRS
    write_partitioned(layout.members(job.part), rows, hash_partition(rows[:, 0], layout.partitions),
                      layout.partitions)
    return len(edges)


def root_of(roots: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Each document's near-cluster root ((doc, root) rows sorted by doc), or the document itself."""
    if not len(roots):
        return docs.copy()
    at = np.minimum(np.searchsorted(roots[:, 0], docs), len(roots) - 1)
    return np.where(roots[at, 0] == docs, roots[at, 1], docs)


@dataclass(frozen=True)
class Survivors:
    """What a survivors task hands back: small figures only (its clusters and removals are files)."""

    sizes: Counter[int]
    removed: int


def survivors(job: PartJob) -> Survivors:
    """For each cluster of the partition (its members grouped by root): the survivor (lowest survivor order,
    then smallest id), the removed ids, and whether it is one exact group or near duplicates; written sorted
    by the kept id (`clusters`), with the removed documents' indices (`removed`)."""
    layout = job.layout
    rows = read_partition([layout.members(p) for p in range(layout.partitions + 1)], job.part, NO_PAIRS)
    rows = np.unique(rows, axis=0) if len(rows) else rows  # sorted by (root, member)
    order, ids = _survivor_keys(layout, rows[:, 1], np.load(layout.task_starts)) if len(rows) else ([], [])
    near = set(np.load(layout.roots)[:, 1].tolist())
    clusters, removed, sizes = [], [], Counter[int]()
    bounds = np.r_[np.flatnonzero(np.r_[True, rows[1:, 0] != rows[:-1, 0]]), len(rows)] if len(rows) else [0]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        ranked = sorted(range(start, stop), key=lambda k: (order[k], ids[k]))
        clusters.append({"kept": ids[ranked[0]], "removed": [ids[k] for k in ranked[1:]],
                         "kind": "near" if int(rows[start, 0]) in near else "exact"})
        removed.extend(int(rows[k, 1]) for k in ranked[1:])
        sizes[stop - start] += 1
    clusters.sort(key=lambda c: c["kept"])
    layout.clusters(job.part).parent.mkdir(parents=True, exist_ok=True)
    with open(layout.clusters(job.part), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(c, sort_keys=True, ensure_ascii=False) + "\n" for c in clusters)
    _save(layout.removed(job.part), np.sort(np.array(removed, dtype=np.int64)))
    return Survivors(sizes, len(removed))


def _survivor_keys(layout: Layout, docs: np.ndarray, task_starts: np.ndarray) -> tuple[list[int], list[str]]:
    """(survivor order, id) of each document, read from the keys files of the sign tasks that saw them."""
    order, ids = [0] * len(docs), [""] * len(docs)
    task_of = np.searchsorted(task_starts, docs, side="right") - 1
    for task in np.unique(task_of).tolist():
        with pa.memory_map(str(layout.keys(task))) as source:
            table = pa.ipc.open_file(source).read_all()
        where = np.flatnonzero(task_of == task)
        picked = table.take(pa.array(docs[where] - task_starts[task]))
        for k, o, i in zip(where.tolist(), picked.column("order").to_pylist(), picked.column("id").to_pylist(),
                           strict=True):
            order[k], ids[k] = o, i
    return order, ids


# ---------------------------------------------------------------------------------- plan and write


@functools.lru_cache(maxsize=1)
def _index(path: Path, version: tuple[int, int]) -> ContaminationIndex:
    return ContaminationIndex.load(path)


@dataclass(frozen=True)
class Plan:
    """What a plan task hands back: per split, the shard's surviving rows and their text bytes; and the
    shard's contaminated training documents ({id: evaluation groups})."""

    docs: dict[str, int]
    bytes: int
    contaminated: dict[str, list[str]]


def plan(job: ShardJob) -> Plan:
    """Each row's fate: its split, or dropped (a removed duplicate, or a training document sharing an n-gram
    with an evaluation item), saved as one code per row for the write tasks."""
    low, high = job.shard.start, job.shard.start + job.shard.size
    layout = job.layout
    removed = set(np.concatenate([rows_in_range(layout.removed(p), low, high)
                                  for p in range(layout.partitions)]).tolist())
    stat = job.index_file.stat()  # type: ignore[union-attr]
    index = _index(job.index_file, (stat.st_mtime_ns, stat.st_size))
    codes = np.full(job.shard.size, DROPPED, dtype=np.uint8)
    docs, size, contaminated = Counter[str](), 0, {}
    for row, doc in enumerate(read_documents(job.shard.path)):
        if low + row in removed:
            continue
        split = split_of(doc, job.params.val_fraction)
        if split == "train" and (groups := index.matches(doc["text"])):
            contaminated[doc["id"]] = groups
            continue
        codes[row] = SPLITS.index(split)
        docs[split] += 1
        size += len(doc["text"].encode("utf-8"))
    _save(layout.plan(job.shard.index), codes)
    return Plan(dict(docs), size, contaminated)


@dataclass(frozen=True)
class WriteJob:
    """One output shard: `split/part-NNNNN.parquet`, made of (shard, skip, take) runs of that split's rows."""

    path: Path
    split: str
    runs: tuple[tuple[Shard, int, int], ...]
    layout: Layout


def write(job: WriteJob) -> int:
    """Write one output shard from the runs of rows the plan gave its split, in document order."""
    code, docs = SPLITS.index(job.split), []
    for shard, skip, take in job.runs:
        rows = np.flatnonzero(np.load(job.layout.plan(shard.index)) == code)[skip : skip + take]
        table = read_documents(shard.path)
        docs.extend(table[row] for row in rows.tolist())
    job.path.parent.mkdir(parents=True, exist_ok=True)
    write_documents(job.path, docs)
    return len(docs)


def write_jobs(shards: list[Shard], counts: list[dict[str, int]], out_dir: Path, shard_docs: int,
               layout: Layout) -> list[WriteJob]:
    """Cut each split's surviving rows, in document order, into shards of `shard_docs` (an empty split is
    one empty shard); O(shards + output shards) in the driver."""
    jobs = []
    for split in SPLITS:
        runs: list[tuple[Shard, int, int]] = []
        part, filled = 0, 0
        for shard, count in zip(shards, counts, strict=True):
            used = 0
            while used < count.get(split, 0):
                take = min(shard_docs - filled, count[split] - used)
                runs.append((shard, used, take))
                used, filled = used + take, filled + take
                if filled == shard_docs:
                    jobs.append(WriteJob(out_dir / split / f"part-{part:05d}.parquet", split, tuple(runs), layout))
                    runs, part, filled = [], part + 1, 0
        if runs or part == 0:
            jobs.append(WriteJob(out_dir / split / f"part-{part:05d}.parquet", split, tuple(runs), layout))
    return jobs

