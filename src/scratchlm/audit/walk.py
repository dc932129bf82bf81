"""The walk: from a target output upstream, manifest by manifest, to the raw downloads.

Each output folder becomes a `Subject` (its manifest, the manifest's digest, the stage's run record and
the MLflow run that vouches for these bytes), every check of `checks.CHECKS` runs on it, and the walk
goes on to the folders its manifest and its dvc.yaml data deps name. Git and DVC run as subprocesses
in the audited repository, `dvc status` once per audit, while the walk hashes files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scratchlm.audit.model import AuditError, AuditReport, Node
from scratchlm.io import DataFormatError, file_hashes, list_files
from scratchlm.lineage import tracking
from scratchlm.lineage.manifest import MANIFEST, content_sha256, manifest_folder, manifest_sha256, read_manifest
from scratchlm.lineage.runrecord import RUNS_DIR, package_versions, read_run_record, record_path

DEFAULT_TARGET = "reports/model_card"


@dataclass
class Context:
    """What every node's checks share: the repo, dvc.yaml and dvc.lock, one `dvc status`, MLflow, file hashes."""

    root: Path
    stages: dict[str, dict[str, Any]]
    lock: dict[str, Any] | None
    dvc_status: Future[dict[str, Any] | str | None]
    uri: str
    versions: dict[str, str]
    hashes: dict[Path, dict[str, Any]] = field(default_factory=dict)
    store_ids: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def file(self, path: Path) -> dict[str, Any]:
        """sha256, md5 and size of a file, once per audit: a raw corpus is read by several stages."""
        key = path.resolve()
        if key not in self.hashes:
            self.hashes[key] = file_hashes(key)
        return self.hashes[key]

    def content(self, path: Path) -> str:
        """An input's content digest as `lineage.describe_input` computed it (a folder's own manifest left out)."""
        if path.is_file():
            return self.file(path)["sha256"]
        return content_sha256({p.relative_to(path).as_posix(): self.file(p) for p in list_files(path)})

    def store_id(self, uri: str, experiment: str) -> str | None:
        """The experiment's store id in `uri`, once per audit; None where it cannot be read."""
        if (uri, experiment) not in self.store_ids:
            try:
                self.store_ids[uri, experiment] = tracking.read_store_id(uri, experiment)
            except tracking.TrackingError:
                self.store_ids[uri, experiment] = None
        return self.store_ids[uri, experiment]

    def rel(self, path: Path) -> str:
        """`path` relative to the repository, as written (links inside the repository are not followed)."""
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()


@dataclass
class Subject:
    """One output folder under audit, with what vouches for it.

    `run_id` is the MLflow run that recorded this manifest digest: the run record's, or (when the record
    names another output, as after `dvc checkout` of an older one) a run found in MLflow by the digest.
    """

    folder: Path
    rel: str
    stage: str
    manifest: dict[str, Any]
    digest: str | None
    record: dict[str, Any] | None
    record_error: str = ""
    run_id: str | None = None
    run_note: str = ""
    commit: str | None = None
    dirty: bool = False
    store_uri: str | None = None
    """Where the run is checked (`run_store`); None when its store is out of this audit's reach."""
    unreachable: str = ""
    """Why the run cannot be checked from here (a local store on another machine), said as information."""


# ---------------------------------------------------------------------------------- the walk


def audit(target: str | None, repo_root: str | Path = ".", *, uri: str | None = None,
          strict: bool = False) -> AuditReport:
    """Audit the lineage of `target` (output folder, file, metrics file or run id; default: the report).

    `uri`: the tracking store the project is configured with (params' `tracking.uri`; MLFLOW_TRACKING_URI wins);
    `strict`: a run in a store out of reach fails the audit (a release check) instead of being information.
    """
    from scratchlm.audit.checks import CHECKS

    started = time.monotonic()
    root = Path(repo_root).resolve()
    stages = load_stages(root)
    start = resolve_target(target or DEFAULT_TARGET, root, stages)
    with ThreadPoolExecutor(max_workers=1) as pool:  # `dvc status` runs while the walk hashes files
        ctx = Context(root, stages, load_lock(root), pool.submit(dvc_status, root),
                      tracking.resolve_uri(tracking.tracking_uri(uri), root), package_versions())
        nodes: dict[str, Node] = {}
        queue = [start]
        while queue:
            folder = queue.pop(0)
            rel = ctx.rel(folder)
            if rel in nodes:
                continue
            subject = load_subject(folder, ctx)
            nodes[rel] = Node(subject.stage, rel, subject.run_id, subject.commit,
                              [check(subject, ctx) for check in CHECKS], upstream_of(subject, ctx))
            queue.extend(ctx.root / path for path in nodes[rel].upstream)
    return AuditReport(target or DEFAULT_TARGET, ctx.rel(start), nodes, round(time.monotonic() - started, 2), strict)


def load_subject(folder: Path, ctx: Context) -> Subject:
    """The folder's manifest and digest, its stage's run record, and the MLflow run vouching for it."""
    try:
        manifest = read_manifest(folder) or {}
    except DataFormatError:
        manifest = {}
    stage = str(manifest.get("stage") or "?")
    subject = Subject(folder, ctx.rel(folder), stage, manifest, manifest_sha256(folder), None)
    try:
        subject.record = read_run_record(stage, ctx.root)
    except DataFormatError as error:
        subject.record_error = str(error)
    record = subject.record or {}
    subject.store_uri = ctx.uri
    if record and record.get("manifest_sha256") == subject.digest:
        subject.run_id, subject.commit, subject.dirty = (record.get("mlflow_run_id"), record.get("git_commit"),
                                                         bool(record.get("git_dirty")))
        if subject.run_id:
            subject.store_uri, subject.unreachable = run_store(record, ctx)
    elif record and subject.digest:
        vouch_from_mlflow(subject, ctx)
    return subject


def run_store(record: dict[str, Any], ctx: Context) -> tuple[str | None, str]:
    """Where the record's run can be checked: (URI, "") or (None, why it cannot be reached from here).

    The store the audit is pointed at when it is the record's store (the same id: the workspace's own
    database, a copy of it, a server under another name); else a server by the URI the record names; else a
    local store on this machine at the path the record names. The audited workspace's own database is always
    checked (gone or made anew, its runs are missing, not out of reach). What remains is a local store of
    another machine, or of a clone that no longer exists: information, and the rest of the chain is verified.
    A record from before stores were named is checked in the store the audit is pointed at.
    """
    store = record.get("mlflow_store")
    if not isinstance(store, dict):
        return ctx.uri, ""
    experiment, wanted = str(record.get("mlflow_experiment") or ""), store.get("id")
    if wanted and ctx.store_id(ctx.uri, experiment) == wanted:
        return ctx.uri, ""
    uri = str(store.get("uri") or "")
    if store.get("kind") == "server":
        return uri, ""
    here = store.get("host") == socket.gethostname()
    if here and wanted and ctx.store_id(uri, experiment) == wanted:
        return uri, ""
    if here and uri == ctx.uri:
        return ctx.uri, ""
    where = "this machine" if here else f"machine {store.get('host')!r}"
    return None, (f"MLflow run {record.get('mlflow_run_id')} is in a local store this audit cannot reach ({uri} on "
                  f"{where}): not checked here; the rest of the chain is (point MLFLOW_TRACKING_URI at a store "
                  "that holds it, or share runs through a tracking server)")


def vouch_from_mlflow(subject: Subject, ctx: Context) -> None:
    """A run record naming another output: look for the MLflow run that recorded this one's manifest digest."""
    try:
        runs = tracking.runs_with_manifest(subject.stage, subject.digest or "", ctx.uri)
        summary = tracking.get_run_summary(runs[0], ctx.uri) if runs else None
    except tracking.TrackingError:
        return
    if summary:
        subject.run_id = summary["run_id"]
        subject.commit = summary["tags"].get("git_commit")
        subject.dirty = summary["tags"].get("git_dirty") == "true"
        subject.run_note = (f"{record_path(subject.stage).as_posix()} names another output of {subject.stage} "
                            f"(manifest {str((subject.record or {}).get('manifest_sha256'))[:12]}); MLflow run "
                            f"{subject.run_id} recorded this one (brought back by `dvc checkout` or an experiment?)")


def upstream_of(subject: Subject, ctx: Context) -> list[str]:
    """The output folders the stage read: its manifest's inputs and its dvc.yaml data deps."""
    read = [*(subject.manifest.get("inputs") or {}), *data_deps(subject.stage, ctx)]
    return sorted({ctx.rel(up) for path in read
                   if (up := manifest_folder(ctx.root / path, ctx.root)) and up != subject.folder})


# ---------------------------------------------------------------------------------- dvc.yaml and dvc.lock


def load_stages(root: Path) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages (empty without a dvc.yaml), families expanded: they map metrics files and plain outs
    to stages."""
    path = root / "dvc.yaml"
    if not path.is_file():
        return {}
    try:
        stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
        params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) if any(
            "foreach" in spec for spec in stages.values()) else {}
    except yaml.YAMLError as error:
        raise AuditError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return expand_families(stages, params or {})


def expand_families(stages: dict[str, Any], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A `foreach` stage as DVC names its members (`<family>@<key>`), `${key}` filled into each. Only what
    this project's dvc.yaml uses is expanded: a foreach over a params.yaml mapping or list (`${a.b}`)."""
    expanded = {}
    for name, spec in stages.items():
        if "foreach" not in spec:
            expanded[name] = spec
            continue
        items: Any = spec["foreach"]
        if isinstance(items, str) and items.startswith("${") and items.endswith("}"):
            names, items = items[2:-1].split("."), params
            for part in names:
                items = items.get(part) if isinstance(items, dict) else None
        for key in (list(items) if isinstance(items, dict | list) else []):
            expanded[f"{name}@{key}"] = _fill(spec.get("do") or {}, str(key))
    return expanded


def _fill(node: Any, key: str) -> Any:
    if isinstance(node, str):
        return node.replace("${key}", key)
    if isinstance(node, dict):
        return {_fill(k, key): _fill(v, key) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(item, key) for item in node]
    return node


def load_lock(root: Path) -> dict[str, Any] | None:
    """dvc.lock's stages; None when the repository has none (never reproduced)."""
    path = root / "dvc.lock"
    if not path.is_file():
        return None
    try:
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except yaml.YAMLError as error:
        raise AuditError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


def entry_paths(entries: list[Any] | None) -> list[str]:
    """Paths of a dvc.yaml deps/outs/metrics list, whose items are strings or `{path: options}`."""
    return [next(iter(item)) if isinstance(item, dict) else str(item) for item in entries or []]


def data_deps(stage: str, ctx: Context) -> list[str]:
    """The stage's dvc.yaml deps that are data, not code: the walk follows them too."""
    return [p for p in entry_paths(ctx.stages.get(stage, {}).get("deps")) if not p.endswith(".py")]


def dvc_status(root: Path) -> dict[str, Any] | str | None:
    """`dvc status --json` once for the whole repo: {stage: changes}; None without dvc.lock; str: error."""
    if not (root / "dvc.lock").is_file():
        return None
    try:
        result = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True,
                                text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"dvc status could not run ({type(error).__name__})"
    if result.returncode != 0:
        return f"dvc status failed: {(result.stderr.strip().splitlines() or ['exit ' + str(result.returncode)])[-1]}"
    try:
        return json.loads(result.stdout.strip() or "{}")
    except json.JSONDecodeError:
        return f"dvc status printed no JSON: {result.stdout.strip()[:200]}"


# ---------------------------------------------------------------------------------- targets


def stage_folder(stage: str, root: Path, stages: dict[str, dict[str, Any]]) -> Path | None:
    """The out of a dvc.yaml stage that carries the manifest (a stage may also write plots, checkpoints)."""
    for out in entry_paths(stages.get(stage, {}).get("outs")):
        if (root / out / MANIFEST).is_file():
            return root / out
    return None


def resolve_target(target: str, root: Path, stages: dict[str, dict[str, Any]]) -> Path:
    """An output folder, a file in one, a stage's metrics/plot file (via dvc.yaml) or an MLflow run id."""
    path = Path(target) if Path(target).is_absolute() else root / target
    if path.exists() and (folder := manifest_folder(path, root)):
        return folder
    if path.exists() or "/" in target or "." in target:
        rel = path.resolve().relative_to(root).as_posix() if path.resolve().is_relative_to(root) else target
        for name in _stages_declaring(rel, stages):
            if folder := stage_folder(name, root, stages):
                return folder
        raise AuditError(f"{target} is not a stage output (no manifest.json in it or above it, "
                         "and no dvc.yaml stage declares it)")
    return _folder_of_run(target, root)


def _stages_declaring(rel: str, stages: dict[str, dict[str, Any]]) -> list[str]:
    """Stages whose outs or metrics are `rel` or hold it (e.g. reports/metrics/pretrain.json -> pretrain)."""
    return [name for name, stage in stages.items()
            if any(rel == out or rel.startswith(out.rstrip("/") + "/")
                   for out in entry_paths(stage.get("outs")) + entry_paths(stage.get("metrics")))]


def _folder_of_run(run_id: str, root: Path) -> Path:
    """The output whose run record names `run_id`."""
    for path in sorted((root / RUNS_DIR).glob("*.json")):
        try:
            record = read_run_record(path.stem, root) or {}
        except DataFormatError:
            continue
        folder = root / str(record.get("output") or "")
        if record.get("mlflow_run_id") == run_id and record.get("output") and (folder / MANIFEST).is_file():
            return folder
    raise AuditError(f"{run_id} is neither a path nor the MLflow run id of any stage's run record")
