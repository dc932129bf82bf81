import json
import random
from pathlib import Path

import pytest

from scratchlm.config import DedupParams
from scratchlm.data.dedup import compute_signatures, dedup_corpus, find_duplicates, shingle_hashes, split_of
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


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], set[str]]:
    """300 unique documents plus 30 exact and 30 near copies of known originals."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("clean")
    originals = [make_document(f"orig/{i:04d}", random_text(rng), "a", {"split": "train"}) for i in range(300)]
    exact, near, docs = set(), set(), list(originals)
    for i in range(30):
        text = originals[i]["text"].upper().replace(" ", "  ") + " !"
        docs.append(make_document(f"exact/{i:04d}", text, "b", {"split": "train"}))
        exact.add(f"exact/{i:04d}")
    for i in range(30, 60):
        text = perturb(rng, originals[i]["text"], changes=1 + i % 2)
        docs.append(make_document(f"near/{i:04d}", text, "b", {"split": "train"}))
        near.add(f"near/{i:04d}")
    rng.shuffle(docs)
    write_sharded(root, "train", iter(docs), shard_docs=64)
    return root, exact, near


def removed_ids(clean_dir: Path, params: DedupParams) -> tuple[set[str], set[str]]:
    sigs = compute_signatures(clean_dir, params)
    exact, labels = find_duplicates(sigs, params)
    by_label: dict[int, list[str]] = {}
    for doc_id, label in zip(sigs.ids, labels, strict=True):
        by_label.setdefault(int(label), []).append(doc_id)
    flagged = {i for group in by_label.values() if len(group) > 1 for i in group}
    exact_flagged = {i for i, e in zip(sigs.ids, exact, strict=True) if list(exact).count(e) > 1}
    return flagged, exact_flagged


def test_planted_duplicates_are_found_with_high_recall_and_precision(planted) -> None:
    clean_dir, exact, near = planted
    flagged, exact_flagged = removed_ids(clean_dir, DedupParams(num_proc=1, jaccard_threshold=0.7))
    copies = exact | near
    originals_of_copies = {f"orig/{i:04d}" for i in range(60)}
    truth = copies | originals_of_copies
    recall = len(flagged & copies) / len(copies)
    precision = len(flagged & truth) / max(1, len(flagged))
    assert exact <= exact_flagged, "every exact copy (case/space/punctuation changed) must be an exact dup"
    assert recall >= 0.95, f"near-dup recall {recall:.2f}"
    assert precision == 1.0, f"unrelated documents flagged: {sorted(flagged - truth)[:5]}"


def test_signatures_do_not_depend_on_worker_count(planted) -> None:
    clean_dir, _, _ = planted
    one = compute_signatures(clean_dir, DedupParams(num_proc=1))
    two = compute_signatures(clean_dir, DedupParams(num_proc=2))
    assert one.ids == two.ids
    assert (one.signatures == two.signatures).all()


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
    metrics = dedup_corpus(clean, raw, out, DedupParams(num_proc=1, val_fraction=0.0), {"bench": "benchmark"})
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
