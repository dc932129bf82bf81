"""`manifest.json`: what produced an output folder, from which exact inputs, code and parameters.

Every stage output carries one. Inputs are recorded with their digest and the MLflow run id of the
stage that produced them (read from the input's own manifest), which is what lets an audit walk a
score back, hop by hop, to the raw downloaded bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from scratchlm.io import DataFormatError, atomic_write_json, list_files, sha256_file, tree_sha256

MANIFEST = "manifest.json"
GENERATED = (":!dvc.lock", ":!reports/metrics", ":!reports/plots", ":!reports/model_card")
TRACKED_PACKAGES = (
    "scratchlm", "torch", "lightning", "dvc", "mlflow", "datasets", "tokenizers",
    "great-expectations", "datasketch", "pyarrow", "numpy", "pandas",
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_state(repo: Path = Path(".")) -> tuple[str | None, bool]:
    """The HEAD commit and whether tracked code differs from it.

    What stages themselves rewrite (`dvc.lock`, the metrics and plots files) is left out of the
    check: otherwise every stage after the first of one `dvc repro` would count as dirty.
    """
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED)
    except (OSError, subprocess.CalledProcessError):
        return None, True
    return commit, bool(status)


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.strip()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape outputs, without importing them."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of an output folder (or of the folder holding a file), if there is one."""
    path, top = Path(path).resolve(), Path.cwd().resolve()
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        candidate = folder / MANIFEST
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise DataFormatError(f"{candidate}: corrupt manifest (not JSON)") from None
        if folder == top or top not in folder.parents:
            break  # never pick up a manifest from outside the repository
    return None


def describe_input(path: str | Path) -> dict[str, Any]:
    """Digest of an input (file or folder) plus the run that produced it, if it has a manifest."""
    path = Path(path)
    upstream = read_manifest(path)
    entry: dict[str, Any] = {
        # the manifest holds timestamps and run ids: leave it out so the digest is the data's alone
        "sha256": tree_sha256(path, exclude=(MANIFEST,)),
        "kind": "dir" if path.is_dir() else "file",
    }
    if upstream is not None:
        entry["producer_stage"] = upstream.get("stage")
        entry["producer_run_id"] = upstream.get("mlflow_run_id")
    return entry


def describe_outputs(out_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in an output folder except the manifest itself."""
    return {
        p.relative_to(out_dir).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in list_files(out_dir)
        if p.name != MANIFEST or p.parent != out_dir
    }


def write_manifest(
    out_dir: Path,
    *,
    stage: str,
    run_id: str | None,
    params: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    started: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `out_dir/manifest.json` (last, after every other file of the output exists)."""
    commit, dirty = git_state()
    manifest = {
        "stage": stage,
        "mlflow_run_id": run_id,
        "git_commit": commit,
        "git_dirty": dirty,
        "params": params,
        "inputs": inputs,
        "outputs": describe_outputs(out_dir),
        "versions": package_versions(),
        "started": started,
        "finished": utc_now(),
        **(extra or {}),
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest


def upstream_run_ids(inputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`{producer_stage: run_id}` of the inputs, for tagging the MLflow run."""
    return {
        entry["producer_stage"]: entry["producer_run_id"]
        for entry in inputs.values()
        if entry.get("producer_stage") and entry.get("producer_run_id")
    }
