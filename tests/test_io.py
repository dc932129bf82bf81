import hashlib
from pathlib import Path

import pytest

from scratchlm.io import (
    DataFormatError,
    atomic_output_dir,
    atomic_write_json,
    make_document,
    read_documents,
    read_jsonl,
    sha256_file,
    tree_sha256,
    write_jsonl,
    write_sharded,
)


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = b"x" * (3 << 20) + b"tail"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_tree_sha256_sees_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    first = tree_sha256(tmp_path)
    (tmp_path / "a" / "x.txt").write_text("2")
    assert tree_sha256(tmp_path) != first
    (tmp_path / "a" / "x.txt").write_text("1")
    assert tree_sha256(tmp_path) == first
    (tmp_path / "a" / "x.txt").rename(tmp_path / "a" / "y.txt")
    assert tree_sha256(tmp_path) != first


def test_atomic_output_dir_replaces_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_output_dir(final) as tmp:
        (tmp / "good.txt").write_text("v1")
    assert (final / "good.txt").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_output_dir(final) as tmp:
        (tmp / "good.txt").write_text("half-written")
        raise RuntimeError("crash mid-stage")
    assert (final / "good.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "temp folders must be cleaned up"
    with atomic_output_dir(final) as tmp:
        (tmp / "new.txt").write_text("v2")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]


def test_atomic_json_is_stable(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    atomic_write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_jsonl_round_trip_and_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataFormatError, match=r"x.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_sharded_documents_round_trip(tmp_path: Path) -> None:
    docs = [make_document(f"d{i}", f"text {i}", "src", {"split": "train"}) for i in range(7)]
    paths = write_sharded(tmp_path, "train", iter(docs), shard_docs=3)
    assert [p.name for p in paths] == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    assert [d for p in paths for d in read_documents(p)] == docs


def test_read_documents_rejects_another_schema(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "body": ["b"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match="bad.parquet"):
        read_documents(tmp_path / "bad.parquet")


def test_leftovers_of_a_killed_run_are_cleaned_and_a_half_swap_is_undone(tmp_path: Path) -> None:
    final = tmp_path / "out"
    (tmp_path / ".out.tmp-dead").mkdir()
    (tmp_path / ".out.old-123").mkdir()
    (tmp_path / ".out.old-123" / "good.txt").write_text("v1")
    (tmp_path / ".out.old-123" / "manifest.json").write_text("{}")
    with atomic_output_dir(final) as tmp:
        assert (final / "good.txt").read_text() == "v1", "the interrupted swap's backup is restored first"
        (tmp / "new.txt").write_text("v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
