"""Bad data, through the real download and clean scripts on local sources.

Each case either stops the stage with one line naming the file and line (or record), or is handled
by a counted, reported rule; the README's reliability table states which, case by case.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from stage_cli import error_line, run_stage, set_params

PROSE = ("The committee met on a bright morning in the old town hall to discuss the river, the harbour and "
         "the new bridge that the council had planned for many years. ") * 4


def use_source(cwd: Path, fmt: str, role: str, member: str, **members: str) -> None:
    """params.yaml with one local source whose `train` (or given) member is `member`."""
    members = members or {"train": member}
    set_params(cwd, {"download": {"sources": None}})  # drop the default sources entirely
    set_params(cwd, {"download": {"sources": {"local": {"kind": "local", "format": fmt, "role": role,
                                                        "members": members}}}})


def download(cwd: Path):
    return run_stage(cwd, "pipelines.download", "data/raw")


def clean(cwd: Path):
    return run_stage(cwd, "pipelines.clean", "data/raw/pretrain", "data/clean")


def clean_texts(cwd: Path) -> list[str]:
    return [t for p in sorted((cwd / "data" / "clean").rglob("*.parquet")) for t in pq.read_table(p)["text"].to_pylist()]


@pytest.mark.parametrize(("fmt", "role", "name", "content", "message"), [
    ("text", "pretrain", "bad.txt", b"fine words here\n" * 50 + b"then \xff\xfe bytes\n",
     "bad.txt: not UTF-8 at byte 805 (invalid start byte)"),
    ("text", "pretrain", "cut.txt.gz", gzip.compress(PROSE.encode())[:-20], "cut.txt.gz: corrupt or truncated gzip"),
    ("jsonl", "pretrain", "docs.jsonl", b'{"text": "one"}\n{"text": "two"\n{"text": "three"}\n',
     "docs.jsonl:2: not valid JSON"),
    ("sms_spam", "classification", "sms.csv", b",label,text\n0,0,hello\n", "sms.csv: missing column 'spam'"),
    ("sms_spam", "classification", "sms.csv", b",spam,text\n0,0,hello\n1,2,win a prize\n",
     "sms.csv:3: label '2' is not 0 or 1"),
    ("olmo_requests", "benchmark", "task.jsonl",
     json.dumps({"doc_id": 3, "doc": {"query": "q", "choices": ["a", "b"]}, "label": 7,
                 "request": {"context": "q", "continuation": " a"}}).encode() + b"\n",
     "task.jsonl:1: malformed request (ValueError: item 3: gold index 7 is out of range for 2 choices)"),
    ("text", "pretrain", "empty.txt", b"", "source local: member 'train' has no records"),
    ("jsonl", "pretrain", "docs.jsonl", b'{"text": "one"}\n{"text": "t\xffo"}\n',
     "docs.jsonl:2: not UTF-8 at byte 11 of the line (invalid start byte)"),
    ("instruct_jsonl", "instruction", "pairs.jsonl", b'{"id": "a", "instruction": "q", "output": "x"}\n'
     b'{"id": "b", "instruction": "q", "output": "y"}\n{"id": "a", "instruction": "r", "output": "z"}\n',
     "pairs.jsonl record 3: id 'a' is already the id of pairs.jsonl record 1 (ids must be unique)"),
], ids=["not-utf8", "truncated-gzip", "malformed-jsonl", "csv-missing-column", "label-outside-set",
        "gold-out-of-range", "empty-corpus", "jsonl-line-not-utf8", "duplicate-id"])
def test_bad_source_file_stops_download_naming_file_and_line(tmp_path: Path, fmt: str, role: str, name: str,
                                                             content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    use_source(tmp_path, fmt, role, name)
    line = error_line(download(tmp_path))
    assert line.startswith("error: download: ") and message in line, line
    assert not (tmp_path / "data" / "raw").exists()


def test_corpus_whose_every_document_is_filtered_stops_clean(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("too short to keep\n")
    use_source(tmp_path, "text", "pretrain", "short.txt")
    assert download(tmp_path).returncode == 0
    line = error_line(clean(tmp_path))
    assert "data/raw/pretrain: every one of the 1 documents was filtered out (drops: too_few_words: 1)" in line, line
    assert not (tmp_path / "data" / "clean").exists()


@pytest.mark.slow
def test_a_single_50_mb_line_is_dropped_by_clean_and_counted(tmp_path: Path) -> None:
    words = ["river", "harbour", "bridge", "council", "the", "of", "and", "town"]
    rng = random.Random(0)
    with open(tmp_path / "huge.txt", "w", encoding="utf-8") as out:  # one line, no newline, ≥ 50 MB
        while out.tell() < 50_000_000:
            out.write(" ".join(rng.choice(words) for _ in range(10_000)) + " ")
    (tmp_path / "normal.txt").write_text(PROSE)
    use_source(tmp_path, "text", "pretrain", "*.txt")
    assert download(tmp_path).returncode == 0
    result = clean(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "reports" / "metrics" / "clean.json").read_text())
    assert metrics["docs_in"] == 2 and metrics["docs_out"] == 1
    assert metrics["drops"] == {"too_many_words": 1} and metrics["bytes_in"] > 50_000_000
    assert clean_texts(tmp_path) == [" ".join(PROSE.split())]


def test_nul_and_control_bytes_are_stripped_by_clean(tmp_path: Path) -> None:
    (tmp_path / "nul.txt").write_text(PROSE.replace("river", "ri\x00ver").replace("bridge", "bri\x07dge"))
    use_source(tmp_path, "text", "pretrain", "nul.txt")
    assert download(tmp_path).returncode == 0
    assert clean(tmp_path).returncode == 0
    (text,) = clean_texts(tmp_path)
    assert "\x00" not in text and "\x07" not in text and "the river, the harbour and the new bridge" in text


def test_a_link_out_of_a_local_source_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(PROSE)
    (tmp_path / "docs" / "b.txt").symlink_to("/etc/passwd")
    use_source(tmp_path, "text", "pretrain", "docs/*.txt")
    line = error_line(download(tmp_path))
    assert f"local: docs/b.txt refused: a link to /etc/passwd, outside the source's folder {tmp_path / 'docs'}" \
        in line, line
    assert not (tmp_path / "data" / "raw").exists()
    use_source(tmp_path, "text", "pretrain", "docs/a.txt")  # a file named outright is taken as named
    assert download(tmp_path).returncode == 0


def test_ids_repeated_across_two_sources_of_one_role_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"id": "doc-1", "text": PROSE}) + "\n")
    set_params(tmp_path, {"download": {"sources": None}})
    set_params(tmp_path, {"download": {"sources": {
        source: {"kind": "local", "format": "jsonl", "role": "pretrain", "members": {"train": f"{file}.jsonl"}}
        for source, file in (("first", "a"), ("second", "b"))}}})
    line = error_line(download(tmp_path))
    assert "b.jsonl record 1: id 'doc-1' is already the id of a.jsonl record 1" in line, line


@pytest.mark.parametrize(("name", "member"), [("../../escaped", "train"), ("ok", "../../escaped")])
def test_a_source_or_member_name_that_is_a_path_is_refused_before_anything_is_written(tmp_path: Path, name: str,
                                                                                      member: str) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "docs.txt").write_text(PROSE)
    set_params(work, {"download": {"sources": None}})
    set_params(work, {"download": {"sources": {name: {"kind": "local", "format": "text", "role": "pretrain",
                                                      "members": {member: "docs.txt"}}}}})
    line = error_line(download(work))
    what = "source" if name != "ok" else "member"
    assert f"{what} '../../escaped' is not a plain name (letters, digits, _ and - only" in line, line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "docs.txt", "params.yaml"]
