"""Where each role's data lives in the download output: `data/raw/<role>/<source>/`.

Stages depend on the roles they read (`data/raw/pretrain` for clean, `data/raw/classification` for the
classifier), never on a source's name, so a source of one role can change without re-running the
stages that read only the others. Each source folder carries its `source.json`; each role folder
carries `sources.json` (the role's source names, possibly none), so every role folder exists for DVC to
track even when a role has no source.
"""

from __future__ import annotations

import json
from pathlib import Path

from scratchlm.io import DataFormatError

ROLES = ("pretrain", "classification", "instruction", "preference", "benchmark")
#: A download role -> the validation frame (and Great Expectations suite) its raw files feed: the one map.
ROLE_FRAMES = {
    "pretrain": "raw_documents",
    "classification": "classification",
    "instruction": "instructions",
    "preference": "preferences",
    "benchmark": "benchmarks",
}
ROLE_INDEX = "sources.json"


def source_dir(raw_dir: Path, role: str, name: str) -> Path:
    """Where download writes a source."""
    return Path(raw_dir) / role / name


def source_dirs(path: Path) -> dict[str, Path]:
    """`{source: folder}` under a download output (`data/raw`, every role), one role's folder
    (`data/raw/pretrain`) or of one source's own folder, sorted by name: the folders with a `source.json`."""
    path = Path(path)
    if (path / "source.json").is_file():
        return {path.name: path}
    found = {record.parent.name: record.parent for record in path.glob("*/source.json")}
    for role in ROLES:
        found.update({record.parent.name: record.parent for record in (path / role).glob("*/source.json")})
    return dict(sorted(found.items()))


def source_roles(path: Path) -> dict[str, str]:
    """`{source: role}` under a download output or a role's folder, from each `source.json`."""
    return {name: role_of(folder) for name, folder in source_dirs(path).items()}


def role_of(folder: Path) -> str:
    record = folder / "source.json"
    try:
        role = json.loads(record.read_text(encoding="utf-8"))["role"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise DataFormatError(f"{record}: not a source description (no 'role')") from None
    if role not in ROLES:
        raise DataFormatError(f"{record}: unknown role {role!r}")
    return str(role)


def role_folder(path: Path, role: str) -> Path:
    """The folder of the one source of `role` under `path` (a download output, the role's folder, or the
    source's own folder), so no stage names a source."""
    path = Path(path)
    if (path / "source.json").is_file():
        return path
    names = [name for name, found in source_roles(path).items() if found == role]
    if len(names) != 1:
        raise DataFormatError(f"{path}: {len(names)} sources with role {role!r} ({', '.join(names) or 'none'}); "
                              "download.sources must have exactly one")
    return source_dirs(path)[names[0]]


def role_files(path: Path, role: str) -> list[Path]:
    """The JSONL files of a fine-tune set, read as one: `path` is a JSONL file, or holds the sources of `role`
    (a download output, the role's folder, one source's folder); several sources of the role are merged
    in name order (download keeps their ids unique across them)."""
    path = Path(path)
    if path.is_file():
        return [path]
    folders = [path] if (path / "source.json").is_file() else [
        folder for name, folder in source_dirs(path).items() if role_of(folder) == role]
    if not folders:
        raise DataFormatError(f"{path}: no source with role {role!r} (download.sources needs one)")
    files = [file for folder in folders for file in sorted(folder.glob("*.jsonl"))]
    if not files:
        raise DataFormatError(f"{', '.join(map(str, folders))}: no .jsonl records of role {role!r}")
    return files
