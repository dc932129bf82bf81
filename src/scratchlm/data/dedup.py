"""The `dedup` stage: exact and MinHash-LSH near-duplicate removal across all sources, then the split.

Every step that grows with the corpus is an executor task (`scratchlm.data.dedup_tasks`), on a local pool
or on a Ray cluster, handing data to the next step through files in the work folder:

1. **Signatures**, one task per chunk of a shard: each document's exact key and MinHash signature (over
   5-word shingle hashes), as one row per LSH band, bucketed by a hash of (band, key) into partitions.
2. **LSH**, one task per partition: a bucket is whole in its partition, so the task finds the exact
   duplicate groups (every copy shares every band key) and the candidate pairs among the buckets'
   representatives; the pairs are de-duplicated in a second pass partitioned by pair.
3. **Confirmation**: one task per shard computes the shingle sets of its documents that are in some pair;
   one task per partition keeps its pairs whose exact Jaccard similarity reaches `jaccard_threshold`.
   Bands and rows are chosen so that a pair at `jaccard_threshold + 0.03` fails to become a candidate
   with probability at most `miss_rate` (`band_shape`); the exact check keeps precision.
4. **Clusters**: the driver joins the confirmed pairs (O(confirmed pairs): union-find), tasks attach each
   exact group to its cluster and choose each cluster's survivor: held-out splits first (dedup never eats
   evaluation text), then the configured source priority, then the smallest id.
5. **Decontamination and the plan**, one task per shard: each row's split, or dropped.
6. **Writing**, one task per output shard.

What the driver holds: the shard list, a few integers per task, the confirmed pairs and the
contaminated documents; never a key per document. Outputs are byte-identical on every executor, worker
count and partition count.
"""

from __future__ import annotations

import heapq
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from scratchlm.config.data import DedupParams
from scratchlm.data import dedup_tasks as tasks
from scratchlm.data.decontaminate import ContaminationIndex, evaluation_texts
from scratchlm.data.minhash import band_shape
from scratchlm.data.parallel import Executor, LocalExecutor
from scratchlm.data.shuffle import hash_partition, write_partitioned
from scratchlm.data.split import SPLITS
from scratchlm.io import atomic_write_json, document_shards

SIGN_DOCS = 512  # documents per signature task: one long shard (WikiText) does not hold up the pool
ROWS_PER_PARTITION = 1 << 22  # band rows a global-step task sorts (~140 MB at 34 bytes a row)
WORK = ".work"  # scratch space inside the stage's temporary output folder, removed before it is swapped in


def partitions_for(docs: int, bands: int, params: DedupParams) -> int:
    """Tasks per global step: as configured, else enough that each sorts at most ROWS_PER_PARTITION rows."""
    return params.partitions or max(1, math.ceil(docs * bands / ROWS_PER_PARTITION))


def corpus_shards(clean_dir: Path) -> list[tasks.Shard]:
    """The clean shards in document order, with the global index of each one's first document."""
    paths = document_shards(clean_dir)
    sizes = [pq.ParquetFile(path).metadata.num_rows for path in paths]
    starts = np.cumsum([0, *sizes]).tolist()
    return [tasks.Shard(path.absolute(), index, starts[index], size) for index, (path, size) in
            enumerate(zip(paths, sizes, strict=True))]


def near_roots(confirmed: np.ndarray) -> np.ndarray:
    """(doc, root) rows sorted by doc for every document in a confirmed pair: the connected components of
    the pairs (union-find), each rooted at its smallest document. Memory: O(confirmed pairs)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in confirmed.tolist():
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    rows = sorted((node, find(node)) for node in parent)
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def dedup_corpus(clean_dir: Path, evaluation: list[Path], out_dir: Path, params: DedupParams,
                 executor: Executor | None = None) -> dict[str, Any]:
    """Exact + near dedup, decontamination and the split; writes `out_dir/{train,val,test}/` shards,
    `clusters.jsonl`, `decontamination.json` and `cluster_sizes.csv`; returns the stage metrics."""
    executor = executor or LocalExecutor(params.num_proc)
    clock, shards = Clock(), corpus_shards(clean_dir)
    docs_in, bands = sum(shard.size for shard in shards), band_shape(params)[0]
    chunks = [(shard, offset, min(SIGN_DOCS, shard.size - offset)) for shard in shards
              for offset in range(0, shard.size, SIGN_DOCS)]
    layout = tasks.Layout((out_dir / WORK).absolute(), partitions_for(docs_in, bands, params), len(chunks))
    signing = [tasks.SignJob(shard, offset, count, task, layout, params)
               for task, (shard, offset, count) in enumerate(chunks)]
    layout.work.mkdir(parents=True, exist_ok=True)
    np.save(layout.shard_starts, np.array([*(s.start for s in shards), docs_in], dtype=np.int64))
    np.save(layout.task_starts, np.array([*(s.start + offset for s, offset, _ in chunks), docs_in], dtype=np.int64))
    parts = [tasks.PartJob(part, layout, params) for part in range(layout.partitions)]
    per_shard = [tasks.ShardJob(shard, layout, params) for shard in shards]

    clock("signatures", run, executor, tasks.sign, signing, "signatures")
    exact_removed = sum(clock("lsh", run, executor, tasks.group, parts, "lsh"))
    candidates = sum(clock("lsh", run, executor, tasks.unique_pairs, parts, "pairs"))
    clock("confirm", run, executor, tasks.shingles, per_shard, "shingles")
    confirmed = sum(clock("confirm", run, executor, tasks.confirm, parts, "confirm"))
    clock("driver", join_pairs, layout)
    found = clock("clusters", survivors, executor, parts)

    index = clock("index", ContaminationIndex.build, evaluation_texts(evaluation), params.decontaminate_ngram)
    index.save(layout.work / "contamination.npz")
    planning = [tasks.ShardJob(shard, layout, params, layout.work / "contamination.npz") for shard in shards]
    plans: list[tasks.Plan] = clock("decontaminate", run, executor, tasks.plan, planning, "plan")
    writing = clock("driver", tasks.write_jobs, shards, [p.docs for p in plans], out_dir.absolute(),
                    params.shard_docs, layout)
    clock("write", run, executor, tasks.write, writing, "write")

    clock("driver", merge_clusters, [layout.clusters(part) for part in range(layout.partitions)],
          out_dir / "clusters.jsonl")
    contaminated = dict(sorted(item for p in plans for item in p.contaminated.items()))
    atomic_write_json(out_dir / "decontamination.json", contaminated)
    _write_histogram(out_dir / "cluster_sizes.csv", found.sizes)
    shutil.rmtree(layout.work)
    return {
        "docs_in": docs_in,
        "exact_duplicates_removed": exact_removed,
        "near_duplicates_removed": found.removed - exact_removed,
        "decontaminated": len(contaminated),
        "decontaminated_by": dict(sorted(Counter(g for gs in contaminated.values() for g in gs).items())),
        "eval_ngrams": len(index),
        "docs_out": {split: sum(p.docs.get(split, 0) for p in plans) for split in SPLITS},
        "bytes_out": sum(p.bytes for p in plans),
        "lsh": {**dict(zip(("bands", "rows"), band_shape(params), strict=True)),
                "candidate_pairs": candidates, "confirmed_pairs": confirmed},
        "seconds": clock.seconds,  # a figure of the machine: the stage moves it to its run record
        "executor_tasks": {"partitions": layout.partitions, "signature_tasks": len(signing), "shards": len(shards),
                  "write_tasks": len(writing)},  # likewise: how the work was cut, for the run record
    }


def run(executor: Executor, fn: Callable[[Any], Any], jobs: list[Any], step: str) -> list[Any]:
    """Every job of one step on the executor, results in job order (the next step reads its files)."""
    from tqdm import tqdm

    return list(tqdm(executor.map(fn, jobs), total=len(jobs), desc=f"dedup {step}", unit="task", mininterval=2))


def join_pairs(layout: tasks.Layout) -> None:
    """The driver's serial step: the confirmed pairs joined into near clusters (`roots`), and each near
    cluster's members handed to the survivors tasks. Memory and time: O(confirmed pairs)."""
    confirmed = np.concatenate([np.load(layout.confirmed(part)) for part in range(layout.partitions)])
    roots = near_roots(confirmed)
    np.save(layout.roots, roots)
    near = np.stack([roots[:, 1], roots[:, 0]], axis=1)
    write_partitioned(layout.members(layout.partitions), near, hash_partition(near[:, 0], layout.partitions),
                      layout.partitions)


def survivors(executor: Executor, parts: list[tasks.PartJob]) -> tasks.Survivors:
    """Attach the exact groups to their clusters and choose each cluster's survivor (tasks); returns the
    cluster sizes and the count of removed documents."""
    run(executor, tasks.members, parts, "members")
    found = run(executor, tasks.survivors, parts, "survivors")
    return tasks.Survivors(sum((f.sizes for f in found), Counter[int]()), sum(f.removed for f in found))


def merge_clusters(paths: Iterable[Path], out: Path) -> None:
    """The partitions' cluster files (each sorted by the kept id) merged into one sorted file, streamed."""
    handles = [open(path, encoding="utf-8") for path in paths]  # noqa: SIM115 - closed below
    try:
        with open(out, "w", encoding="utf-8") as sink:
            sink.writelines(heapq.merge(*handles, key=lambda line: json.loads(line)["kept"]))
    finally:
        for handle in handles:
            handle.close()


class Clock:
    """Wall seconds per phase: the task steps (signatures … write, the driver waiting on its executor), the
    driver's own serial work (`driver`: joining pairs, the write plan, the cluster merge) and `index` (the
    decontamination n-grams: the evaluation sets' size, not the corpus's)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        result = fn(*args)
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - started, 3)
        return result


def _write_histogram(path: Path, sizes: Counter[int]) -> None:
    lines = ["cluster_size,clusters"] + [f"{size},{count}" for size, count in sorted(sizes.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
