"""Atomic outputs, content hashes and the document shard format shared by every data stage.

Stages write into a temporary sibling folder and rename it into place only on success, so a crash
or a bad input never leaves a half-written output and never replaces a good one with a broken one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 1 << 20

#: The schema of every document shard (ARCHITECTURE.md, "Documents").
DOC_SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("meta", pa.string())]
)


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and the line or record at fault."""


# ---------------------------------------------------------------------------------- hashing


def sha256_file(path: str | Path) -> str:
    """Stream a file through sha256 so multi-GB outputs never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(path: str | Path) -> dict[str, Any]:
    """sha256 (our lineage), md5 (what DVC records in dvc.lock) and size of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "bytes": size}


def dvc_dir_md5(file_md5s: dict[str, str]) -> str:
    """The hash DVC 3 records in dvc.lock for a folder: md5 of its sorted `{md5, relpath}` listing + `.dir`.

    The same bytes `dvc_data.hashfile.tree.Tree.as_bytes()` hashes, so a manifest can be compared with
    `dvc.lock` without running DVC.
    """
    listing = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(file_md5s.items())]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest() + ".dir"


# ---------------------------------------------------------------------------------- walking a folder


@dataclass(frozen=True)
class TreeEntry:
    """One name under a walked folder: where it is, and what it leads to (links followed for `kind` only)."""

    path: Path  # the root as given, joined with `parts`
    parts: tuple[str, ...]  # the path under the root
    kind: str  # "file" (regular), "dir", "other" (fifo, socket, device) or "broken" (a link to nothing)
    link: str | None = None  # a symbolic link's target as written, None for anything else

    @property
    def rel(self) -> str:
        return "/".join(self.parts)


def walk_tree(root: Path, descend: Callable[[tuple[str, ...]], bool] | None = None) -> Iterator[TreeEntry]:
    """Every name under `root`, depth first in sorted order, each real folder entered once.

    A symbolic link is reported (as an entry with `link` set) and never entered, whatever it leads to: a
    link to a parent (`sub/up -> ..`) cannot loop and a link to a sibling cannot list its files twice. A
    folder reached twice by other means (a bind mount of a parent) is entered once. `descend(parts)` says
    whether a real folder is worth entering (a glob that cannot match below it); default: always.
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, parts = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue  # removed while walking, unreadable (as rglob and glob skip it), or a root that is no folder
        subfolders = []
        for entry in entries:
            path, here = folder / entry.name, (*parts, entry.name)
            if entry.is_symlink():
                yield TreeEntry(path, here, _kind_behind(path), os.readlink(path))
            elif entry.is_dir(follow_symlinks=False):
                yield TreeEntry(path, here, "dir")
                if descend is None or descend(here):
                    subfolders.append((path, here))
            else:
                yield TreeEntry(path, here, "file" if entry.is_file(follow_symlinks=False) else "other")
        stack.extend(reversed(subfolders))


def _kind_behind(link: Path) -> str:
    """What a symbolic link leads to: "file", "dir", "other" or "broken" (missing, or a loop of links)."""
    try:
        mode = os.stat(link).st_mode
    except (OSError, ValueError):
        return "broken"
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


#: What a listing says of a link it does not list, by what the link leads to.
LINK_KINDS = {"dir": "a link to a folder, not followed", "broken": "a link to nothing, skipped",
              "other": "a link to no regular file, skipped"}
#: Links `list_files` already named in this process (an audit lists one folder several times).
_NAMED_LINKS: set[str] = set()


def list_files(root: Path) -> list[Path]:
    """All regular files under root, sorted by relative path so every listing is deterministic.

    A link to a regular file is listed (its bytes are the target's, as DVC reads it: DVC's `symlink` cache
    type makes every output file such a link). A link to a folder is never followed, as DVC does not follow
    it either (and a link to a parent would loop): it is named once, in one warning line, as is a broken link.
    """
    files = []
    for entry in walk_tree(root):
        if entry.kind == "file":
            files.append(entry.path)
        elif entry.link is not None and str(entry.path) not in _NAMED_LINKS:
            _NAMED_LINKS.add(str(entry.path))
            print(f"warning: {entry.path} -> {entry.link}: {LINK_KINDS[entry.kind]}", file=sys.stderr)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def tree_sha256(root: str | Path, exclude: Iterable[str] = ()) -> str:
    """One digest for a folder: sha256 over sorted `relpath sha256` lines (names and bytes both count)."""
    root = Path(root)
    if root.is_file():
        return sha256_file(root)
    skip = set(exclude)
    lines = [
        f"{p.relative_to(root).as_posix()} {sha256_file(p)}\n"
        for p in list_files(root)
        if p.relative_to(root).as_posix() not in skip
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_output_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside `final`; swap it into place only if the block succeeds.

    The temp folder lives in the same parent so the final rename is atomic on one filesystem.
    On failure the temp folder is removed and whatever was at `final` before is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it owner-only; outputs should read like any folder
    try:
        yield tmp
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale(final: Path) -> None:
    """Temp folders a killed run left beside `final` (an output folder or a staged file's folder).

    DVC's lock on the paths a stage writes rules out a live writer.
    """
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for backup in sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime):
        if not final.exists() and (backup / "manifest.json").is_file():
            backup.rename(final)  # killed mid-swap: the previous complete output comes back
        else:
            shutil.rmtree(backup, ignore_errors=True)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp`, keeping the old version until the new one is in place."""
    backup = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(backup)
    try:
        tmp.rename(final)
    except BaseException:
        if backup.exists():
            backup.rename(final)
        raise
    if backup.exists() or backup.is_symlink():  # the new output is in place: clearing the old one is best effort
        if backup.is_dir() and not backup.is_symlink():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temp file + fsync + rename so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Stable JSON (sorted keys, fixed indent, trailing newline) so equal content gives equal bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


# ---------------------------------------------------------------------------------- JSONL


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (keys sorted); returns the number of records."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield records; a malformed line raises DataFormatError naming the file and line number."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 at byte {error.start} of the line "
                                      f"({error.reason})") from None
            if line.strip():
                yield json_object(line, path, lineno)


def json_object(line: str, path: str | Path, lineno: int) -> dict[str, Any]:
    """One JSON-lines record; anything but a JSON object raises DataFormatError naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
    return record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL data set, whose `id`s must be unique: a split hashed by id would otherwise put
    one record's twin in another split. A duplicate names both records."""
    records, first = [], {}
    for number, record in enumerate(read_jsonl(path), start=1):
        if "id" in record:
            key = str(record["id"])
            if key in first:
                raise DataFormatError(f"{path}: records {first[key]} and {number} share the id {key!r} "
                                      "(ids must be unique)")
            first[key] = number
        records.append(record)
    return records


# ---------------------------------------------------------------------------------- parquet shards


def make_document(doc_id: str, text: str, source: str, meta: dict[str, Any]) -> dict[str, str]:
    """A document row in the shared schema; meta is stored as a sorted JSON string."""
    return {"id": doc_id, "text": text, "source": source, "meta": json.dumps(meta, sort_keys=True)}


def write_documents(path: str | Path, docs: list[dict[str, str]]) -> None:
    """Write one parquet shard with the document schema (zstd, no pandas index)."""
    table = pa.Table.from_pylist(docs, schema=DOC_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def read_documents(path: str | Path) -> list[dict[str, str]]:
    """Read one shard into rows; a shard with the wrong schema is a DataFormatError naming it."""
    table = pq.read_table(path)
    if not DOC_SCHEMA.equals(table.schema.remove_metadata()):
        raise DataFormatError(f"{path}: schema {table.schema.names} is not the document schema")
    return table.to_pylist()


def document_shards(root: str | Path) -> list[Path]:
    """All parquet shards under root, in a stable order."""
    root = Path(root)
    return [p for p in list_files(root) if p.suffix == ".parquet"]


def write_sharded(out_dir: Path, prefix: str, docs: Iterable[dict[str, str]], shard_docs: int) -> list[Path]:
    """Write documents as `prefix-00000.parquet`, … of at most `shard_docs` rows each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    batch: list[dict[str, str]] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == shard_docs:
            paths.append(_flush(out_dir, prefix, len(paths), batch))
            batch = []
    if batch or not paths:
        paths.append(_flush(out_dir, prefix, len(paths), batch))
    return paths


def _flush(out_dir: Path, prefix: str, index: int, batch: list[dict[str, str]]) -> Path:
    path = out_dir / f"{prefix}-{index:05d}.parquet"
    write_documents(path, batch)
    return path


def read_set(paths: list[Path]) -> list[dict[str, Any]]:
    """The records of a set's files in order (`read_records` each), their ids unique across the files too."""
    records, first = [], {}
    for path in paths:
        for number, record in enumerate(read_records(path), start=1):
            key = str(record.get("id"))
            if "id" in record and first.setdefault(key, f"{path} record {number}") != f"{path} record {number}":
                raise DataFormatError(f"{path} record {number}: id {key!r} is already the id of {first[key]} "
                                      "(ids must be unique)")
            records.append(record)
    return records
