"""Where a user command (`export`, `import-hf`) may write: never over its source or the pipeline's outputs.

Those commands replace their `--out` folder whole (atomically). `--out models` once replaced every
trained model with one export. So the folder must not be, contain or lie inside the command's source
or any DVC-tracked output (dvc.yaml's outs, metrics and plots, dvc.lock's outs, `*.dvc` files) or the
repository itself; and an existing folder is replaced only if it carries the marker this module writes
into every folder it creates, so a folder the command did not create is never deleted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from scratchlm.io import atomic_write_json

MARKER = "scratchlm-provenance.json"


class UnsafeOutput(ValueError):
    """The --out folder would overwrite something the command does not own; one line naming both."""


def _overlaps(a: Path, b: Path) -> str | None:
    """How `a` relates to `b`: 'is', 'contains' or 'lies inside', or None when they are apart."""
    if a == b:
        return "is"
    if a in b.parents:
        return "contains"
    if b in a.parents:
        return "lies inside"
    return None


def repo_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` that is a DVC project (has `.dvc/` or `dvc.yaml`)."""
    for folder in (path, *path.parents):
        if (folder / ".dvc").is_dir() or (folder / "dvc.yaml").is_file():
            return folder
    return None


def tracked_outputs(root: Path) -> list[Path]:
    """Every path DVC tracks as an output in the project at `root` (absolute, resolved)."""
    paths: list[str] = []
    for name in ("dvc.yaml", "dvc.lock"):
        try:
            stages = (yaml.safe_load((root / name).read_text(encoding="utf-8")) or {}).get("stages") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for stage in stages.values() if isinstance(stages, dict) else []:
            for key in ("outs", "metrics", "plots"):
                for item in stage.get(key) or [] if isinstance(stage, dict) else []:
                    paths.append(item.get("path") or next(iter(item)) if isinstance(item, dict) else str(item))
    paths += _dvc_file_outs(root)
    return sorted({(root / p).resolve() for p in paths if p})


def _dvc_file_outs(root: Path) -> list[str]:
    """Outs of the `*.dvc` files git knows of (`dvc add`), relative to `root`."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "*.dvc"], cwd=root, capture_output=True, text=True,
                                timeout=30, check=True).stdout.split("\0")
    except (OSError, subprocess.SubprocessError):
        return []
    outs = []
    for rel in filter(None, listed):
        try:
            data = yaml.safe_load((root / rel).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        outs += [(Path(rel).parent / out["path"]).as_posix() for out in data.get("outs") or []
                 if isinstance(out, dict) and out.get("path")]
    return outs


def guard_out_dir(out: Path, sources: list[Path], command: str) -> None:
    """Refuse an --out folder that would overwrite a source, a DVC-tracked output, the project, or a folder
    the command did not create; raise UnsafeOutput naming the clash."""
    if out.is_symlink():
        raise UnsafeOutput(f"--out {out} is a symbolic link: choose a plain folder")
    target = out.resolve()
    projects = sorted({root for p in (target, *(s.resolve() for s in sources)) if (root := repo_root(p))})
    for folder in projects:
        if target in (folder, *folder.parents):
            raise UnsafeOutput(f"--out {out} is or contains the project {folder}: choose a new folder")
    for folder in projects:
        for tracked in tracked_outputs(folder):
            if how := _overlaps(target, tracked):
                raise UnsafeOutput(f"--out {out} {how} {tracked.relative_to(folder).as_posix()}, a pipeline output "
                                   "tracked by DVC: choose a folder outside the pipeline's outputs")
    for source in sources:
        if how := _overlaps(target, source.resolve()):
            raise UnsafeOutput(f"--out {out} {how} the {command} source {source}: it would be replaced; "
                               "choose a new folder")
    if target.exists() and not (target / MARKER).is_file():
        what = "a file" if not target.is_dir() else "a folder that scratchlm did not create"
        raise UnsafeOutput(f"--out {out} is {what} (no {MARKER} in it): it would be replaced; "
                           "choose a new folder or remove it yourself")


def write_marker(folder: Path, command: str, source: Path, extra: dict[str, Any] | None = None) -> None:
    """Mark a folder as written by `command` from `source` (what a later run may replace), with provenance."""
    from scratchlm.lineage.manifest import manifest_sha256

    atomic_write_json(folder / MARKER, {"command": command, "source": str(source.resolve()),
                                         "source_manifest_sha256": manifest_sha256(source) if source.is_dir() else None,
                                         **(extra or {})})
