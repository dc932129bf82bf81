"""`manifest.json`: what an output folder is, as a function of its inputs, params and code alone.

Every stage output carries one. Nothing in it changes when the same inputs, params and code run
again, on another day, machine or commit: DVC's hash of the folder then changes only when its
content does, so an identical re-run lets DVC skip everything downstream, and two machines that
built the same data have the same `dvc.lock`. The facts of one execution (MLflow run, commit, times,
machine) live in the stage's run record instead (`scratchlm.lineage.runrecord`).

Each input is recorded with the digest of its content (sha256, and the md5 DVC records for it) and
the sha256 of its producer's manifest, or, for an input that is a part of a producer's output
(`data/raw/pretrain` of `data/raw`), the digest of the producer's entries for that part. That chains
the manifests: a forged output whose manifest entry was re-hashed has a new manifest (or part)
digest, which every consumer (and the producer's run record and MLflow run) still holds the old
value of.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from scratchlm.io import DataFormatError, atomic_write_json, dvc_dir_md5, file_hashes, list_files

MANIFEST = "manifest.json"
#: Version of the manifest layout (2: deterministic, the run's volatile facts moved to run records).
FORMAT = 2


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of an output folder (or of the folder holding a file), if there is one."""
    folder = manifest_folder(path)
    if folder is None:
        return None
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataFormatError(f"{folder / MANIFEST}: corrupt manifest (not JSON)") from None


def manifest_folder(path: str | Path, top: Path | None = None) -> Path | None:
    """The nearest folder at or above `path` holding a manifest, never above `top` (default: the cwd).

    The walk follows the path as written, not where symbolic links lead: with DVC's `symlink` cache type
    every output file is a link into `.dvc/cache`, and `audit --reproduce` links inputs into a scratch
    folder; either way the producer is the folder the path names.
    """
    path, top = Path(os.path.abspath(path)), Path(os.path.abspath(top or Path.cwd()))
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if (folder / MANIFEST).is_file():
            return folder
        if folder == top or top not in folder.parents:
            break  # never pick up a manifest from above the repository
    return None


def manifest_sha256(folder: str | Path) -> str | None:
    """sha256 of a folder's manifest.json bytes: what consumers, run records and MLflow record."""
    path = Path(folder) / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def content_sha256(hashes: dict[str, dict[str, Any]]) -> str:
    """One digest over `relpath sha256` lines in path order, the folder's own manifest left out.

    The same value as `io.tree_sha256(folder, exclude=("manifest.json",))`: the data's digest alone,
    which stays comparable with outputs written by earlier versions.
    """
    lines = [f"{rel} {entry['sha256']}\n" for rel, entry in sorted(hashes.items()) if rel != MANIFEST]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def tree_hashes(root: Path) -> dict[str, dict[str, Any]]:
    """sha256, md5 and size of every file under `root`, by relative path (each file read once)."""
    return {p.relative_to(root).as_posix(): file_hashes(p) for p in list_files(root)}


def describe_input(path: str | Path) -> dict[str, Any]:
    """An input's content digest, DVC's md5 of it, and its producer's stage and manifest digest."""
    path = Path(path)
    if path.is_dir():
        hashes = tree_hashes(path)
        entry: dict[str, Any] = {"kind": "dir", "sha256": content_sha256(hashes),
                                 "md5": dvc_dir_md5({rel: h["md5"] for rel, h in hashes.items()})}
    else:
        digest = file_hashes(path)
        entry = {"kind": "file", "sha256": digest["sha256"], "md5": digest["md5"]}
    folder = manifest_folder(path)
    if folder is not None:
        producer = read_manifest(folder) or {}
        entry["producer_stage"] = producer.get("stage")
        if Path(os.path.abspath(path)) == folder:
            entry["producer_manifest"] = manifest_sha256(folder)
        else:  # a part of an output (data/raw/pretrain): the producer's entries for that part, not all of it
            entry["producer_part"] = part_sha256(producer, Path(os.path.abspath(path)).relative_to(folder))
    return entry


def part_sha256(manifest: dict[str, Any], part: Path) -> str:
    """sha256 of a producer manifest's stage and its `relpath sha256` output lines under `part`.

    What a stage reading one part of another's output (a role's folder of the download, validate's
    corpus.json) records of its producer: re-hashing a file of that part in the producer's manifest
    changes it, as the whole manifest's digest would, but a change elsewhere in the producer's output
    (another role's source) does not, so the stage's own manifest and output stay as they were.
    """
    prefix = part.as_posix()
    lines = [f"{rel} {entry.get('sha256')}\n" for rel, entry in sorted((manifest.get("outputs") or {}).items())
             if rel == prefix or rel.startswith(prefix + "/")]
    return hashlib.sha256(f"{manifest.get('stage')}\n{''.join(lines)}".encode()).hexdigest()


def describe_code(files: list[str], root: Path) -> dict[str, dict[str, str]]:
    """sha256 and md5 of each code file the stage runs (its dvc.yaml code deps), relative to `root`."""
    described = {}
    for rel in sorted(files):
        digest = file_hashes(root / rel)
        described[rel] = {"sha256": digest["sha256"], "md5": digest["md5"]}
    return described


def code_sha256(code: dict[str, dict[str, str]]) -> str:
    """One digest of a stage's code, for display (the manifest keeps each file's)."""
    return hashlib.sha256("".join(f"{rel} {d['sha256']}\n" for rel, d in sorted(code.items())).encode()).hexdigest()


def describe_outputs(out_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256, md5 and size of every file in an output folder except the manifest itself."""
    return {rel: entry for rel, entry in tree_hashes(out_dir).items() if rel != MANIFEST}


def write_manifest(
    out_dir: Path,
    *,
    stage: str,
    params: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    code: dict[str, dict[str, str]],
    other_outputs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write `out_dir/manifest.json` (last, after every other file of the output exists).

    `other_outputs` are the stage's files outside the folder (its metrics file, its plots), by their
    repository path, digested from the staged copies that will be swapped into place with the folder.
    """
    manifest = {
        "format": FORMAT,
        "stage": stage,
        "params": params,
        "code": code,
        "inputs": inputs,
        "outputs": describe_outputs(out_dir),
        "other_outputs": other_outputs or {},
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest
