"""The dedup stage's global steps as tasks: large buckets, exact groups across partitions, the write plan."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from scratchlm.config.data import DedupParams
from scratchlm.data.dedup import dedup_corpus
from scratchlm.data.dedup_tasks import Layout, Shard, bucket_pairs, write_jobs
from scratchlm.data.parallel import LocalExecutor
from scratchlm.data.shuffle import hash_partition, read_partition, rows_in_range, write_partitioned
from scratchlm.io import make_document, read_documents, write_sharded

VOCAB = [f"v{i}" for i in range(2000)]


def text(rng: random.Random, words: int = 150) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def nudged(rng: random.Random, base: str) -> str:
    """One word of 150 replaced: Jaccard ≈ 0.94, in every band's bucket with its original nearly always."""
    words = base.split()
    words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A near-duplicate family of 45 (buckets above ALL_PAIRS_UP_TO: a star and a chain), an exact family of
    40 whose first copy is a held-out test document (it must survive), and 200 unrelated documents."""
    rng = random.Random(1)
    root = tmp_path_factory.mktemp("crowded")
    base, held = text(rng), text(rng)
    docs = [make_document(f"near/{i:03d}", nudged(rng, base), "b", {"split": "train"}) for i in range(45)]
    docs += [make_document(f"exact/{i:03d}", held.upper(), "b", {"split": "train"}) for i in range(39)]
    docs.append(make_document("zz-held", held, "a", {"split": "test"}))
    docs += [make_document(f"other/{i:03d}", text(rng), "a", {"split": "train"}) for i in range(200)]
    rng.shuffle(docs)
    write_sharded(root, "train", iter(docs), shard_docs=40)
    return root


def test_large_buckets_and_exact_families_become_one_cluster_each(crowded: Path, tmp_path: Path) -> None:
    metrics = dedup_corpus(crowded, [], tmp_path / "out", DedupParams(num_proc=2, partitions=4), LocalExecutor(2))
    clusters = [json.loads(line) for line in (tmp_path / "out" / "clusters.jsonl").read_text().splitlines()]
    by_kept = {c["kept"]: c for c in clusters}
    assert by_kept["zz-held"]["kind"] == "exact" and len(by_kept["zz-held"]["removed"]) == 39, "held-out survives"
    near = [c for c in clusters if c["kind"] == "near"]
    assert len(near) == 1 and near[0]["kept"] == "near/000" and len(near[0]["removed"]) == 44
    assert [c["kept"] for c in clusters] == sorted(c["kept"] for c in clusters)
    assert metrics["exact_duplicates_removed"] == 39 and metrics["near_duplicates_removed"] == 44
    test_ids = [d["id"] for p in sorted((tmp_path / "out" / "test").glob("*.parquet")) for d in read_documents(p)]
    assert test_ids == ["zz-held"]


def test_bucket_pairs_gives_every_pair_of_a_small_bucket_and_connects_a_large_one() -> None:
    docs = np.array([3, 7, 1, 2, 4, *range(10, 50)], dtype=np.int64)
    first = np.zeros(len(docs), dtype=bool)
    first[[0, 2, 5]] = True  # buckets [3, 7], [1, 2, 4], [10 … 49]
    pairs = {tuple(p) for p in bucket_pairs(docs, first).tolist()}
    assert {(3, 7), (1, 2), (1, 4), (2, 4)} <= pairs
    large = {p for p in pairs if p[0] >= 10}
    assert {(10, j) for j in range(11, 50)} <= large and len(large) == 39 + 38  # a star and a chain (one shared)
    assert all(i < j for i, j in pairs)


def test_a_shuffle_hands_each_partition_its_rows_from_every_writer(tmp_path: Path) -> None:
    values = [np.arange(start, start + 100, dtype=np.int64) for start in (0, 1000, 5000)]
    for writer, rows in enumerate(values):
        write_partitioned(tmp_path / f"{writer}.npy", rows, hash_partition(rows, 5), 5)
    paths = [tmp_path / f"{w}.npy" for w in range(3)]
    parts = [read_partition(paths, p, np.zeros(0, np.int64)) for p in range(5)]
    assert sorted(np.concatenate(parts).tolist()) == sorted(np.concatenate(values).tolist())
    assert all(set(hash_partition(rows, 5).tolist()) <= {p} for p, rows in enumerate(parts))
    np.save(tmp_path / "sorted.npy", np.array([1, 5, 9, 12, 40], dtype=np.int64))
    assert rows_in_range(tmp_path / "sorted.npy", 5, 40).tolist() == [5, 9, 12]


def test_the_write_plan_cuts_each_split_in_document_order(tmp_path: Path) -> None:
    layout = Layout(tmp_path, 1, 1)
    shards = [Shard(tmp_path / f"{i}.parquet", i, 100 * i, 100) for i in range(3)]
    counts = [{"train": 7, "val": 1}, {"train": 0}, {"train": 5}]
    jobs = write_jobs(shards, counts, tmp_path / "out", 4, layout)
    train = [[(run[0].index, run[1], run[2]) for run in job.runs] for job in jobs if job.split == "train"]
    assert train == [[(0, 0, 4)], [(0, 4, 3), (2, 0, 1)], [(2, 1, 4)]], "12 rows: three full shards, no empty fourth"
    assert [job.path.name for job in jobs if job.split == "test"] == ["part-00000.parquet"], "an empty split: one"
    assert [len(job.runs) for job in jobs if job.split == "test"] == [0]
