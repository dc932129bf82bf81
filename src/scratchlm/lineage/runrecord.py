"""Run records: the facts of one stage execution that its inputs, params and code do not determine.

`reports/runs/<stage>.json` (kept in git, never a DVC output) names the MLflow run, the commit and
whether the tree was dirty, the DVC experiment, start and end times, the timing metrics, package
versions and the machine, and the sha256 of the manifest the execution wrote. The manifest itself
stays deterministic (`scratchlm.lineage.manifest`); `scratchlm audit` checks that the record, the manifest and
the MLflow run agree.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from scratchlm.io import DataFormatError, atomic_write_json
from scratchlm.launch import usable_cpus
from scratchlm.lineage.manifest import manifest_folder, manifest_sha256, part_sha256, read_manifest

RUNS_DIR = Path("reports/runs")
#: What stages rewrite themselves: left out of the dirty check, or every stage after the first of one
#: `dvc repro` would count as dirty.
GENERATED = (":!dvc.lock", ":!reports/metrics", ":!reports/plots", ":!reports/model_card", ":!reports/runs")
TRACKED_PACKAGES = (
    "scratchlm", "torch", "lightning", "dvc", "mlflow", "datasets", "tokenizers",
    "great-expectations", "datasketch", "pyarrow", "numpy", "pandas",
)
#: Metric names that measure the machine, not the computation: they go to the run record and MLflow,
#: never into a DVC output (a leaf or a nested key ending like this, or named exactly so).
TIMING_SUFFIXES = ("seconds", "_per_s")
TIMING_NAMES = ("mfu", "peak_tflops", "peak_tflops_source", "executor_tasks")  # the last: how work was cut


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def record_path(stage: str, root: Path = Path(".")) -> Path:
    return root / RUNS_DIR / f"{stage}.json"


def is_timing(key: str) -> bool:
    """`train_seconds`, `seconds.benchmarks`, `tokens_per_s`, `mfu`: a figure of the machine."""
    return any(part.endswith(TIMING_SUFFIXES) or part in TIMING_NAMES for part in key.split("."))


def split_timing(metrics: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """`metrics` without its timing leaves, and those leaves (nested the same way)."""
    kept: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if is_timing(str(key)):
            timing[key] = value
        elif isinstance(value, Mapping):
            inner, inner_timing = split_timing(value, f"{name}.")
            kept[key] = inner
            if inner_timing:
                timing[key] = inner_timing
        else:
            kept[key] = value
    return kept, timing


def git_state(repo: Path = Path(".")) -> tuple[str | None, bool]:
    """The HEAD commit and whether tracked code differs from it (what stages rewrite left out)."""
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
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


def machine() -> dict[str, Any]:
    """What ran the stage: CPU model and count, native bf16 or not, and the GPU when torch has one."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(), "usable_cpus": usable_cpus()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    info["cpu"] = model
    info["native_bf16"] = "avx512_bf16" in flags or "amx_bf16" in flags
    torch = sys.modules.get("torch")  # only when the stage imported it: data stages never load torch for this
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_run_record(stage: str, *, output: str, manifest_sha256: str, run_id: str | None, experiment: str | None,
                     started: str, seconds: float, timing: dict[str, Any], dvc_exp: str | None,
                     commit: str | None, dirty: bool, executor: list[dict[str, Any]] | None = None,
                     store: dict[str, str] | None = None) -> dict[str, Any]:
    """Replace `reports/runs/<stage>.json` with this execution's record (`executor`: where the data stages'
    per-shard work ran, one entry per map; `store`: the tracking store that holds the run, so an audit from
    another clone or machine knows where to look, `scratchlm.lineage.tracking.describe_store`)."""
    record = {
        "stage": stage,
        "output": output,
        "manifest_sha256": manifest_sha256,
        "mlflow_run_id": run_id,
        "mlflow_experiment": experiment,
        "mlflow_store": store if run_id else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "dvc_exp": dvc_exp,
        "started": started,
        "finished": utc_now(),
        "seconds": round(seconds, 3),
        "timing": timing,
        "versions": package_versions(),
        "machine": machine(),
        "executor": executor or [],
    }
    atomic_write_json(record_path(stage), record)
    return record


def read_run_record(stage: str, root: Path = Path(".")) -> dict[str, Any] | None:
    """The stage's run record, None when there is none; a corrupt one is a one-line error naming it."""
    path, name = record_path(stage, root), record_path(stage).as_posix()
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataFormatError(f"{name}: corrupt run record (not JSON)") from None
    if not isinstance(record, dict):
        raise DataFormatError(f"{name}: corrupt run record (not an object)")
    return record


def run_in_store(record: Mapping[str, Any], store: Mapping[str, str] | None) -> str | None:
    """The record's MLflow run id when its run lives in `store` (the same store id), else None: a run in
    another clone's or machine's store cannot be tagged or nested from here."""
    recorded = record.get("mlflow_store")
    same = isinstance(recorded, Mapping) and store is not None and recorded.get("id") == store.get("id")
    return record.get("mlflow_run_id") if same else None


def upstream_run_ids(inputs: Mapping[str, Mapping[str, Any]], root: Path = Path(".")) -> dict[str, str]:
    """`{producer stage: MLflow run id}` of the inputs whose producer's run record matches the manifest they
    read: the whole manifest, or for a part of an output (`data/raw/pretrain`) the manifest now in place
    when its entries for that part are the ones read."""
    ids = {}
    for path, entry in inputs.items():
        stage = entry.get("producer_stage")
        if not stage:
            continue
        try:
            record = read_run_record(stage, root) or {}
            read = entry.get("producer_manifest") or _part_manifest(root, path, entry.get("producer_part"))
        except DataFormatError:
            continue
        if record.get("mlflow_run_id") and read and record.get("manifest_sha256") == read:
            ids[stage] = record["mlflow_run_id"]
    return ids


def _part_manifest(root: Path, path: str, part: str | None) -> str | None:
    """sha256 of the manifest above `path` if its entries for `path` digest to `part`, else None."""
    folder = manifest_folder(root / path, root)
    if part is None or folder is None:
        return None
    here = Path(os.path.abspath(root / path)).relative_to(folder)
    return manifest_sha256(folder) if part_sha256(read_manifest(folder) or {}, here) == part else None
