"""The gpt2-124m profile's FineWeb-Edu source, offline: its spec as the profile writes it, pointed at a local
folder laid out and typed like FineWeb-Edu's `sample-10BT` config, through download and clean.

Only `dataset` (the local folder) and `limit` are changed, and the part size is made small, so a few
hundred documents give several parts as 2.8 million give dozens.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scratchlm.config.data import CleanParams, DownloadParams, SourceSpec
from scratchlm.config.loader import parse_section
from scratchlm.data import sources
from scratchlm.data.clean import clean_corpus
from scratchlm.data.download import download_all
from scratchlm.data.parallel import LocalExecutor
from scratchlm.data.sources import SourceError, fetch_source
from scratchlm.io import sha256_file

ROOT = Path(__file__).resolve().parents[2]
FILES, DOCS_PER_FILE, LIMIT = 3, 100, 250  # the limit stops inside the third file
PART_BYTES = 64 << 10
LIMITS = {"timeout_s": 30.0, "retries": 0, "max_member_bytes": 10_000}
#: FineWeb-Edu's columns and types (its dataset card), in its order.
SCHEMA = pa.schema([("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
                    ("date", pa.string()), ("file_path", pa.string()), ("language", pa.string()),
                    ("language_score", pa.float64()), ("token_count", pa.int64()), ("score", pa.float64()),
                    ("int_score", pa.int64())])
README = """---
configs:
- config_name: sample-10BT
  data_files:
  - split: train
    path: sample/10BT/*
---
"""
WORDS = tuple(" ".join([
    "the of and to in is that for it as with was on be by this are from at an which or have not their",
    "students learn science history water energy plants cells teacher lesson reading children school",
    "research climate ancient river mountain language numbers fractions planets light sound animals",
    "community library museum village garden writing question answer example method result important",
    "different several during between because through people world often study explain describe",
]).split())


def document(rng: random.Random, index: int) -> str:
    """A few paragraphs of plain English-like prose that the clean filters keep; every 25th is a stub they drop."""
    if index % 25 == 7:
        return "Click here to subscribe."
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."
                 for _ in range(rng.randint(12, 30))]
    return "\n\n".join(" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4))


def row(rng: random.Random, file: int, index: int) -> dict[str, Any]:
    text = document(rng, file * DOCS_PER_FILE + index)
    return {"text": text, "id": f"<urn:uuid:{file:04d}-{index:08d}>", "dump": "CC-MAIN-2024-10",
            "url": f"https://example.org/{file}/{index}", "date": "2024-02-21T10:00:00Z",
            "file_path": f"s3://commoncrawl/{file}.warc.gz", "language": "en", "language_score": 0.95,
            "token_count": len(text) // 4, "score": 3.1, "int_score": 3}


@pytest.fixture(scope="module")
def fineweb_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A local dataset folder with FineWeb-Edu's layout, config and columns (small row groups, as streaming
    reads them), and one more data file past the limit that is not parquet at all: loading the dataset
    whole would fail on it, streaming `limit` records never opens it."""
    folder = tmp_path_factory.mktemp("fineweb-edu")
    (folder / "README.md").write_text(README, encoding="utf-8")
    data = folder / "sample" / "10BT"
    data.mkdir(parents=True)
    rng, rows = random.Random(0), []
    for file in range(FILES):
        table = pa.Table.from_pylist([row(rng, file, index) for index in range(DOCS_PER_FILE)], schema=SCHEMA)
        pq.write_table(table, data / f"{file:03d}_00000.parquet", row_group_size=20)
        rows += table.to_pylist()
    (data / f"{FILES:03d}_00000.parquet").write_bytes(b"beyond the limit: never read when streamed")
    return folder, rows


def profile_spec(dataset: Path, limit: int) -> SourceSpec:
    """The profile's FineWeb-Edu source as written, but for the dataset's place and the limit."""
    profile = yaml.safe_load((ROOT / "pipelines" / "profiles" / "gpt2-124m.yaml").read_text(encoding="utf-8"))
    spec = profile["download"]["sources"]["fineweb_edu"]
    assert spec["dataset"] == "HuggingFaceFW/fineweb-edu" and spec["config"] == "sample-10BT"
    return SourceSpec(**{**spec, "dataset": str(dataset), "limit": limit})


@pytest.fixture
def small_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Parts of PART_BYTES, no dataset cache of the user's touched, and a record of each `load_dataset` call."""
    import datasets

    monkeypatch.setattr(sources, "HF_PART_BYTES", PART_BYTES)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    calls: list[dict[str, Any]] = []
    real = datasets.load_dataset

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append({"args": args, **kwargs, "result": result})
        return result

    monkeypatch.setattr(datasets, "load_dataset", spy)
    return calls


def test_the_profile_source_streams_into_bounded_parts(fineweb_like: tuple[Path, list[dict[str, Any]]],
                                                       small_parts: list[dict[str, Any]], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    folder, rows = fineweb_like
    got = fetch_source("fineweb_edu", profile_spec(folder, LIMIT), tmp_path / "w", **LIMITS)
    parts = got.files["data"]
    assert [p.name for p in parts] == [f"data-{i:05d}.jsonl" for i in range(len(parts))] and len(parts) >= 3
    assert all(0 < p.stat().st_size <= PART_BYTES for p in parts)
    records = [json.loads(line) for p in parts for line in p.read_text(encoding="utf-8").splitlines()]
    assert records == [{"id": r["id"], "text": r["text"]} for r in rows[:LIMIT]], "in order, FineWeb-Edu's ids"
    stream = b"".join(p.read_bytes() for p in parts)
    assert got.provenance["members"]["data"] == [{"path": p.name, "sha256": sha256_file(p)} for p in parts]
    assert got.provenance["sha256"] == hashlib.sha256(stream).hexdigest()
    assert (got.provenance["config"], got.provenance["id_field"]) == ("sample-10BT", "id")
    # streamed: an IterableDataset, nothing cached, and the unreadable file past the limit never opened
    assert [call["streaming"] for call in small_parts] == [True]
    assert isinstance(small_parts[0]["result"], datasets.IterableDataset)
    assert not list((tmp_path / "cache").rglob("*.arrow"))
    # where the parts are cut changes no byte of the records
    monkeypatch.setattr(sources, "HF_PART_BYTES", 1 << 30)
    whole = fetch_source("fineweb_edu", profile_spec(folder, LIMIT), tmp_path / "w", **LIMITS)
    assert [p.name for p in whole.files["data"]] == ["data-00000.jsonl"], "the earlier fetch's parts are gone"
    assert whole.files["data"][0].read_bytes() == stream and whole.provenance["sha256"] == got.provenance["sha256"]


def test_a_stream_that_breaks_part_way_says_where(fineweb_like: tuple[Path, list[dict[str, Any]]],
                                                  small_parts: list[dict[str, Any]], tmp_path: Path) -> None:
    """Past the limit the unreadable file is reached: one line naming the source and how far it got (records
    are read in file order, one at a time, so exactly the three good files came first)."""
    folder, _ = fineweb_like
    with pytest.raises(SourceError, match=rf"^fineweb_edu: reading {folder} failed after {FILES * DOCS_PER_FILE} "
                                          r"records: .*Parquet magic bytes not found"):
        fetch_source("fineweb_edu", profile_spec(folder, 2 * FILES * DOCS_PER_FILE), tmp_path / "w", **LIMITS)


def test_download_then_clean_on_two_workers_writes_what_one_does(
        fineweb_like: tuple[Path, list[dict[str, Any]]], small_parts: list[dict[str, Any]], tmp_path: Path) -> None:
    folder, rows = fineweb_like
    params = DownloadParams(sources={"fineweb_edu": profile_spec(folder, LIMIT)}, shard_docs=40)
    metrics = download_all(params, tmp_path / "raw")
    assert metrics["fineweb_edu"]["records"] == LIMIT
    record = json.loads((tmp_path / "raw" / "pretrain" / "fineweb_edu" / "source.json").read_text(encoding="utf-8"))
    assert len(record["origin"]["members"]["data"]) >= 3, "source.json lists every part with its digest"
    shards = sorted((tmp_path / "raw" / "pretrain" / "fineweb_edu").glob("*.parquet"))
    assert len(shards) == 7  # ceil(250 / 40): the jobs clean's executor spreads over its workers

    clean = parse_section("clean", yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["clean"])
    assert isinstance(clean, CleanParams)
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"clean-{workers}"
        stats = clean_corpus(tmp_path / "raw" / "pretrain", out, clean, ["fineweb_edu"], LocalExecutor(workers))
        outputs[workers] = (stats, {p.relative_to(out).as_posix(): p.read_bytes()
                                    for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[1] == outputs[2], "the same bytes from 1 and 2 workers"
    stats, files = outputs[2]
    assert len([name for name in files if name.endswith(".parquet")]) == 7
    assert stats["docs_in"] == LIMIT and 0 < stats["docs_out"] < LIMIT, "the stubs dropped, the prose kept"
    assert stats["docs_in"] - stats["docs_out"] == len([r for r in rows[:LIMIT] if len(r["text"].split()) < 20])
