import json
import random
from pathlib import Path

import pytest

from scratchlm.config.data import DedupParams
from scratchlm.data.dedup import dedup_corpus
from scratchlm.data.minhash import shingle_hashes
from scratchlm.data.split import split_of
from scratchlm.io import make_document, read_documents, write_jsonl, write_sharded

VOCAB = [f"w{i}" for i in range(3000)]
PINNED_VAL = [0, 34, 55, 72, 81]  # ids d0..d99 with val_fraction 0.1


def random_text(rng: random.Random, words: int = 120) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def perturb(rng: random.Random, text: str, changes: int) -> str:
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


def shingle_set(text: str) -> set[int]:
    return set(shingle_hashes(text.split(), 5))


def jaccard_of(a: str, b: str) -> float:
    x, y = shingle_set(a), shingle_set(b)
    return len(x & y) / len(x | y)


def copy_at(rng: random.Random, text: str, low: float, high: float) -> tuple[str, float]:
    """A copy of `text` with words replaced until its 5-word-shingle Jaccard with the original is in [low, high]."""
    while True:
        changes = 1
        while True:
            copy = perturb(rng, text, changes)
            similarity = jaccard_of(text, copy)
            if low <= similarity <= high:
                return copy, similarity
            if similarity < low:
                break
            changes += 1


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]]]:
    """300 unique documents of 200 words; exact copies of 30; near copies of 40 at Jaccard 0.73-0.85 (the
    default threshold is 0.7: these must be found); far copies of 40 at 0.45-0.66 (these must not)."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("clean")
    originals = [make_document(f"orig/{i:04d}", random_text(rng, 200), "a", {"split": "train"}) for i in range(300)]
    docs, planted_ids = list(originals), {"exact": set(), "near": set(), "far": set()}
    for i in range(30):
        text = originals[i]["text"].upper().replace(" ", "  ") + " !"
        docs.append(make_document(f"exact/{i:04d}", text, "b", {"split": "train"}))
        planted_ids["exact"].add(f"exact/{i:04d}")
    for kind, (low, high), first in (("near", (0.73, 0.85), 30), ("far", (0.45, 0.66), 70)):
        for i in range(first, first + 40):
            text, _ = copy_at(rng, originals[i]["text"], low, high)
            docs.append(make_document(f"{kind}/{i:04d}", text, "b", {"split": "train"}))
            planted_ids[kind].add(f"{kind}/{i:04d}")
    rng.shuffle(docs)
    write_sharded(root, "train", iter(docs), shard_docs=64)
    return root, planted_ids


def flagged_by(clean_dir: Path, out: Path, params: DedupParams, executor=None) -> tuple[dict[str, tuple[int, str]],
                                                                                  dict]:
    """({document id: (cluster number, kind)} of every document in a duplicate cluster, the metrics)."""
    metrics = dedup_corpus(clean_dir, [], out, params, executor)
    clusters = [json.loads(line) for line in (out / "clusters.jsonl").read_text().splitlines()]
    return {i: (n, c["kind"]) for n, c in enumerate(clusters) for i in [c["kept"], *c["removed"]]}, metrics


def test_planted_duplicates_are_found_as_the_threshold_says(planted, tmp_path: Path) -> None:
    """Recall ≥ 0.95 at threshold + 0.03 and above, precision 1.0: no far copy, no unrelated document."""
    clean_dir, ids = planted
    cluster, metrics = flagged_by(clean_dir, tmp_path / "out", DedupParams(num_proc=1, jaccard_threshold=0.7))

    def paired(copy: str) -> bool:
        original = f"orig/{copy.split('/')[1]}"
        return copy in cluster and cluster.get(original, (None,))[0] == cluster[copy][0]

    assert all(paired(copy) and cluster[copy][1] == "exact" for copy in ids["exact"]), "exact copies: exact dups"
    recall = sum(map(paired, ids["near"])) / len(ids["near"])
    assert recall >= 0.95, f"near-dup recall {recall:.2f}"
    truth = ids["near"] | ids["exact"] | {f"orig/{i:04d}" for i in range(70)}
    assert set(cluster) <= truth, f"flagged beyond the planted pairs: {sorted(set(cluster) - truth)[:5]}"
    assert not set(cluster) & ids["far"], "a pair below the threshold was merged"
    assert metrics["lsh"]["bands"] * metrics["lsh"]["rows"] <= 128
    assert metrics["exact_duplicates_removed"] == 30 and metrics["near_duplicates_removed"] == round(recall * 40)


@pytest.mark.parametrize("runs", [((1, None), (2, None)), ((2, 3), (1, 8))], ids=["workers", "partitions"])
def test_outputs_do_not_depend_on_the_worker_or_partition_count(planted, tmp_path: Path, runs) -> None:
    from scratchlm.data.parallel import LocalExecutor
    from scratchlm.io import list_files, sha256_file

    clean_dir, _ = planted
    digests = []
    reference = tmp_path / "reference"
    flagged_by(clean_dir, reference, DedupParams(num_proc=1))
    for workers, partitions in runs:
        out = tmp_path / f"w{workers}-p{partitions}"
        _, metrics = flagged_by(clean_dir, out, DedupParams(num_proc=workers, partitions=partitions),
                                LocalExecutor(workers))
        assert metrics["executor_tasks"]["partitions"] == (partitions or 1)
        digests.append({p.relative_to(out).as_posix(): sha256_file(p) for p in list_files(out)})
    assert digests[0] == digests[1] == {p.relative_to(reference).as_posix(): sha256_file(p)
                                        for p in list_files(reference)}
    assert "train/part-00000.parquet" in digests[0]
    assert not any(name.startswith(".work") for name in digests[0]), "the scratch space is gone"


def test_band_shape_follows_the_threshold_and_miss_rate() -> None:
    from scratchlm.data.minhash import band_shape, candidate_probability

    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = band_shape(DedupParams(jaccard_threshold=threshold, miss_rate=0.01))
        assert bands * rows <= 128 and candidate_probability(threshold + 0.03, bands, rows) >= 0.99
        # one more row per band would miss more than 1% at threshold + 0.03
        assert candidate_probability(threshold + 0.03, 128 // (rows + 1), rows + 1) < 0.99
    assert band_shape(DedupParams(num_bands=14, rows_per_band=8)) == (14, 8)


def test_split_is_stable_and_keeps_held_out_splits() -> None:
    held = make_document("x", "t", "s", {"split": "test"})
    assert split_of(held, val_fraction=0.99) == "test"
    docs = [make_document(f"d{i}", "t", "s", {"split": "train"}) for i in range(2000)]
    splits = [split_of(d, 0.1) for d in docs]
    # pinned: the split is a function of the id alone, the same on every machine and in every run
    assert [i for i, s in enumerate(splits[:100]) if s == "val"] == PINNED_VAL
    assert 0.07 < splits.count("val") / len(splits) < 0.13


def test_dedup_corpus_keeps_held_out_copy_and_decontaminates(tmp_path: Path) -> None:
    rng = random.Random(1)
    shared = random_text(rng)
    leaked = "the quick brown fox jumps over the lazy dog near the quiet river bank at dawn today"
    docs = [
        make_document("a/train/1", shared, "a", {"split": "train"}),
        make_document("a/test/1", shared, "a", {"split": "test"}),
        make_document("b/1", random_text(rng) + " " + leaked + " " + random_text(rng), "b", {"split": "train"}),
        make_document("b/2", random_text(rng), "b", {"split": "train"}),
    ]
    clean, raw, out = tmp_path / "clean", tmp_path / "raw", tmp_path / "out"
    write_sharded(clean / "a", "train", iter(docs), shard_docs=10)
    (raw / "bench").mkdir(parents=True)
    item = {"id": "piqa/0", "task": "piqa", "query": "Q", "choices": ["x"], "gold": 0,
            "requests": [{"context": "Goal: " + leaked[:40], "continuation": leaked[40:]}]}
    write_jsonl(raw / "bench" / "piqa.jsonl", [item])
    (raw / "bench" / "source.json").write_text(json.dumps({"name": "bench", "role": "benchmark"}))
    metrics = dedup_corpus(clean, [raw], out, DedupParams(num_proc=1, val_fraction=0.0))
    kept = {d["id"] for split in ("train", "val", "test") for p in (out / split).glob("*.parquet")
            for d in read_documents(p)}
    assert kept == {"a/test/1", "b/2"}
    assert metrics["exact_duplicates_removed"] == 1
    assert metrics["decontaminated"] == 1 and metrics["decontaminated_by"] == {"piqa": 1}
    assert json.loads((out / "decontamination.json").read_text()) == {"b/1": ["piqa"]}
    assert (out / "cluster_sizes.csv").read_text() == "cluster_size,clusters\n2,1\n"


def test_a_text_of_exactly_n_words_is_the_same_shingle_inside_a_longer_text() -> None:
    words = ["the", "river", "runs", "past", "the", "old", "mill"]
    assert shingle_hashes(words[:5], 5) == shingle_hashes(words, 5)[:1]
    assert shingle_hashes(words[:4], 5) != shingle_hashes(words[:5], 5)  # shorter than n: a shingle of its own
    assert shingle_hashes(words, 5) == shingle_hashes(list(words), 5, memo={})  # the memo changes nothing
    assert len(shingle_hashes(words, 5)) == len(words) - 4
