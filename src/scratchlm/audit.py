"""`scratchlm audit`: re-verify everything behind an output, hop by hop, down to the raw downloads.

A score is only as trustworthy as the chain of bytes, code, parameters and runs behind it. The
manifests record that chain; this module walks it upstream (each manifest's inputs lead to the
manifests of the outputs they came from) and, for every stage on the way, checks that

- `outputs`: every output file still has the sha256 (and size) its manifest recorded, and no file
  was added to the folder;
- `inputs`: every input still digests as recorded (`tree_sha256` without `manifest.json`, as
  `lineage.describe_input` computed it) and its producer's manifest still names the same run;
- `dvc`: `dvc status` finds the stage's deps and outs as `dvc.lock` has them ("not checked" when
  the repository has no `dvc.lock`, e.g. a checkout that was never reproduced);
- `git`: the recorded commit exists; the stage's code (its `.py` deps in dvc.yaml) changed since
  that commit is a warning, since the output may still be right, just not reproducible from HEAD;
- `mlflow`: the recorded run exists, is not deleted, finished, carries the manifest's params and
  the metrics of `reports/metrics/<stage>.json` (relative tolerance 1e-9);
- `versions`: packages whose installed version differs from the recorded one (information only).

Pure functions, no MLflow import (runs are read through `scratchlm.tracking`). Git and DVC run as
subprocesses in the audited repository, DVC once per audit.

`reproduce_stage` (`scratchlm audit --reproduce STAGE`) goes one step further for one stage: it re-runs
the stage's dvc.yaml cmd in a scratch folder with the params its manifest recorded and the recorded
bytes of its inputs, and compares every output file with the recorded sha256 (training stages: the
metrics within a tolerance, see TRAINING). Matching hashes say the record is sufficient to rebuild the
output, which checking the hashes alone cannot say.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scratchlm import tracking
from scratchlm.io import atomic_write_json, atomic_write_text, list_files, sha256_file, tree_sha256
from scratchlm.lineage import MANIFEST, package_versions, read_manifest

DEFAULT_TARGET = "reports/model_card"
METRICS_DIR = Path("reports/metrics")
REL_TOL = 1e-9
OK, FAIL, WARN, SKIP, INFO = "ok", "fail", "warn", "skip", "info"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!", SKIP: "-", INFO: "i"}


class AuditError(ValueError):
    """The target cannot be audited at all (not a stage output, an unknown run id); one line."""


@dataclass
class Check:
    """One verification of one stage: its status and, unless it passed, the lines that say why."""

    name: str
    status: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Node:
    """One stage execution, identified by its output folder; `upstream` holds the folders it read."""

    stage: str
    path: str
    run_id: str | None
    commit: str | None
    checks: list[Check]
    upstream: list[str]

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)


@dataclass
class AuditReport:
    """The lineage as a DAG: every node once in `nodes` (keyed by output path), `root` is the target's."""

    target: str
    root: str
    nodes: dict[str, Node]
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(node.failed for node in self.nodes.values())


@dataclass
class _Context:
    """What every node's checks share: the repo, dvc.yaml, one `dvc status`, the MLflow URI, a hash cache."""

    root: Path
    stages: dict[str, dict[str, Any]]
    dvc_status: Future[dict[str, Any] | str | None]
    uri: str
    versions: dict[str, str]
    hashes: dict[Path, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- the walk


def audit(target: str | None, repo_root: str | Path = ".") -> AuditReport:
    """Audit the lineage of `target` (output folder, file, metrics file or run id; default: the report)."""
    started = time.monotonic()
    root = Path(repo_root).resolve()
    stages = load_stages(root)
    start = resolve_target(target or DEFAULT_TARGET, root, stages)
    with ThreadPoolExecutor(max_workers=1) as pool:  # `dvc status` runs while the walk hashes files
        ctx = _Context(root, stages, pool.submit(dvc_status, root),
                       tracking.resolve_uri(tracking.tracking_uri(), root), package_versions())
        nodes: dict[str, Node] = {}
        queue = [start]
        while queue:
            folder = queue.pop(0)
            rel = _rel(folder, root)
            if rel not in nodes:
                nodes[rel] = audit_node(folder, ctx)
                queue.extend(root / path for path in nodes[rel].upstream)
    return AuditReport(target or DEFAULT_TARGET, _rel(start, root), nodes, round(time.monotonic() - started, 2))


def audit_node(folder: Path, ctx: _Context) -> Node:
    """Every check of one stage output; the walk goes on upstream whatever they found."""
    manifest = read_manifest(folder) or {}
    stage = str(manifest.get("stage") or "?")
    read = [*(manifest.get("inputs") or {}), *data_deps(stage, ctx)]
    upstream = sorted({_rel(up, ctx.root) for path in read
                       if (up := manifest_folder(ctx.root / path, ctx.root)) and up != folder})
    checks = [check_outputs(folder, manifest, ctx), check_inputs(manifest, stage, ctx), check_dvc(stage, ctx),
              check_git(manifest, stage, ctx), check_mlflow(manifest, stage, ctx), check_versions(manifest, ctx)]
    return Node(stage, _rel(folder, ctx.root), manifest.get("mlflow_run_id"), manifest.get("git_commit"),
                checks, upstream)


def _rel(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root).as_posix()


# ---------------------------------------------------------------------------------- targets


def load_stages(root: Path) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages (empty without a dvc.yaml): they map metrics files and plain outs to stages."""
    path = root / "dvc.yaml"
    if not path.is_file():
        return {}
    try:
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except yaml.YAMLError as error:
        raise AuditError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


def entry_paths(entries: list[Any] | None) -> list[str]:
    """Paths of a dvc.yaml deps/outs/metrics list, whose items are strings or `{path: options}`."""
    return [next(iter(item)) if isinstance(item, dict) else str(item) for item in entries or []]


def manifest_folder(path: Path, root: Path) -> Path | None:
    """The output folder holding `path` (the nearest folder with a manifest), never above `root`."""
    path = path.resolve()
    if root != path and root not in path.parents:
        return None
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if (folder / MANIFEST).is_file():
            return folder
        if folder == root:
            break
    return None


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
    return _folder_of_run(target, root, stages)


def _stages_declaring(rel: str, stages: dict[str, dict[str, Any]]) -> list[str]:
    """Stages whose outs or metrics are `rel` or hold it (e.g. reports/metrics/pretrain.json -> pretrain)."""
    return [name for name, stage in stages.items()
            if any(rel == out or rel.startswith(out.rstrip("/") + "/")
                   for out in entry_paths(stage.get("outs")) + entry_paths(stage.get("metrics")))]


def _folder_of_run(run_id: str, root: Path, stages: dict[str, dict[str, Any]]) -> Path:
    """The output whose manifest records `run_id`, among the outs dvc.yaml declares."""
    for name in stages:
        folder = stage_folder(name, root, stages)
        if folder and (read_manifest(folder) or {}).get("mlflow_run_id") == run_id:
            return folder
    raise AuditError(f"{run_id} is neither a path nor the MLflow run id of any stage output's manifest")


# ---------------------------------------------------------------------------------- bytes


def file_digest(path: Path, ctx: _Context) -> str:
    """sha256 of a file, once per audit: a raw corpus is an output and the input of several stages."""
    key = path.resolve()
    if key not in ctx.hashes:
        ctx.hashes[key] = sha256_file(key)
    return ctx.hashes[key]


def tree_digest(path: Path, ctx: _Context) -> str:
    """`io.tree_sha256(path, exclude=("manifest.json",))` (same lines, same order) over cached file hashes."""
    if path.is_file():
        return file_digest(path, ctx)
    lines = [f"{p.relative_to(path).as_posix()} {file_digest(p, ctx)}\n" for p in list_files(path)
             if p.relative_to(path).as_posix() != MANIFEST]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def check_outputs(folder: Path, manifest: dict[str, Any], ctx: _Context) -> Check:
    """Every recorded output file has its recorded size and sha256; nothing unrecorded was added."""
    recorded = manifest.get("outputs") or {}
    problems = []
    for rel, entry in sorted(recorded.items()):
        path, name = folder / rel, _rel(folder / rel, ctx.root)
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.get("bytes", path.stat().st_size) or \
                file_digest(path, ctx) != entry.get("sha256"):
            problems.append(f"{name}: changed (sha256 differs from the manifest)")
    for path in list_files(folder):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST and rel not in recorded:
            problems.append(f"{_rel(path, ctx.root)}: not in the manifest (added after the stage ran)")
    if not manifest:
        problems.append(f"{_rel(folder, ctx.root)}/{MANIFEST}: missing or empty")
    return Check("outputs", FAIL if problems else OK, problems)


def data_deps(stage: str, ctx: _Context) -> list[str]:
    """The stage's dvc.yaml deps that are data, not code: the walk follows them too."""
    return [p for p in entry_paths(ctx.stages.get(stage, {}).get("deps")) if not p.endswith(".py")]


def check_inputs(manifest: dict[str, Any], stage: str, ctx: _Context) -> Check:
    """Each input digests as when the stage read it, and its producer's manifest names the same run.

    A dvc.yaml data dep missing from the manifest's inputs is a warning: DVC tracks it, but the
    manifest cannot say which bytes of it the stage saw.
    """
    recorded = manifest.get("inputs") or {}
    unrecorded = [f"{p}: a dvc.yaml dep of {stage} that its manifest does not record"
                  for p in data_deps(stage, ctx) if p not in recorded]
    problems = _input_problems(recorded, ctx)
    return Check("inputs", FAIL if problems else WARN if unrecorded else OK, problems + unrecorded)


def _input_problems(recorded: dict[str, Any], ctx: _Context) -> list[str]:
    problems = []
    for rel, entry in sorted(recorded.items()):
        path = ctx.root / rel
        if not path.exists():
            problems.append(f"{rel}: input missing")
            continue
        if tree_digest(path, ctx) != entry.get("sha256"):
            problems.append(f"{rel}: input changed since the stage read it (sha256 differs)")
        producer = (read_manifest(folder) or {}) if (folder := manifest_folder(path, ctx.root)) else {}
        recorded, now = entry.get("producer_run_id"), producer.get("mlflow_run_id")
        if recorded and now != recorded:
            problems.append(f"{rel}: read from run {recorded}, but its output now comes from run {now}")
    return problems


# ---------------------------------------------------------------------------------- DVC and git


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


def _describe_change(change: Any) -> str:
    """One line per DVC status entry, e.g. `changed outs: data/clean (modified)`."""
    if isinstance(change, dict):
        return "; ".join(f"{kind}: " + (", ".join(f"{p} ({s})" for p, s in sorted(items.items()))
                                        if isinstance(items, dict) else str(items))
                         for kind, items in change.items())
    return str(change)


def check_dvc(stage: str, ctx: _Context) -> Check:
    """The stage's deps and outs against dvc.lock, as `dvc status` sees them now."""
    status = ctx.dvc_status.result()
    if status is None:
        return Check("dvc", SKIP, ["not checked: no dvc.lock in the repository"])
    if isinstance(status, str):
        return Check("dvc", FAIL, [status])
    if stage not in ctx.stages:
        return Check("dvc", WARN, [f"stage {stage!r} is not in dvc.yaml"])
    changes = status.get(stage)
    if not changes:
        return Check("dvc", OK)
    lines = [_describe_change(change) for change in (changes if isinstance(changes, list) else [changes])]
    return Check("dvc", FAIL, [f"dvc.lock: {line}" for line in lines])


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)


def check_git(manifest: dict[str, Any], stage: str, ctx: _Context) -> Check:
    """The recorded commit exists; code changed since it (or a dirty tree then) is only a warning."""
    commit = manifest.get("git_commit")
    if not commit:
        return Check("git", FAIL, ["no git commit recorded in the manifest"])
    if _git(ctx.root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return Check("git", FAIL, [f"commit {commit} does not exist in this repository"])
    warnings = ["produced from a dirty working tree"] if manifest.get("git_dirty") else []
    code = [p for p in entry_paths(ctx.stages.get(stage, {}).get("deps")) if p.endswith(".py")]
    if code:
        changed = _git(ctx.root, "diff", "--name-only", commit, "--", *code).stdout.split()
        if changed:
            warnings.append(f"code changed since {commit[:7]}: {', '.join(changed)}")
    return Check("git", WARN if warnings else OK, warnings)


# ---------------------------------------------------------------------------------- MLflow


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL)


def check_mlflow(manifest: dict[str, Any], stage: str, ctx: _Context) -> Check:
    """The run exists, is live and finished, and carries the manifest's params and the metrics file."""
    run_id = manifest.get("mlflow_run_id")
    if not run_id:
        return Check("mlflow", WARN, ["no MLflow run recorded (tracking was off when the stage ran)"])
    try:
        run = tracking.get_run_summary(run_id, ctx.uri)
    except tracking.TrackingError as error:
        return Check("mlflow", FAIL, [f"MLflow run {run_id} not checked: {error}"])
    if run is None:
        return Check("mlflow", FAIL, [f"MLflow run {run_id} not found in {ctx.uri}"])
    if run["lifecycle_stage"] == "deleted":
        return Check("mlflow", FAIL, [f"MLflow run {run_id} is deleted"])
    problems = [] if run["status"] == "FINISHED" else [f"MLflow run {run_id} has status {run['status']}"]
    for key, value in sorted(tracking.flatten(manifest.get("params") or {}).items()):
        if run["params"].get(key) != value:
            problems.append(f"param {key}: manifest {value!r}, MLflow run {run_id} {run['params'].get(key)!r}")
    problems += _metric_problems(stage, run_id, run["metrics"], ctx)
    return Check("mlflow", FAIL if problems else OK, problems)


def _metric_problems(stage: str, run_id: str, logged: dict[str, float], ctx: _Context) -> list[str]:
    """Keys of reports/metrics/<stage>.json whose value the run does not carry."""
    path = METRICS_DIR / f"{stage}.json"
    try:
        metrics = json.loads((ctx.root / path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return [f"{path}: unreadable ({type(error).__name__})"]
    problems = []
    for key, value in sorted(tracking.flatten_metrics(metrics if isinstance(metrics, dict) else {}).items()):
        if key in logged and _same(value, logged[key]):
            continue
        if any(_same(value, v) for v in tracking.last_logged_values(run_id, key, ctx.uri)):
            continue  # also logged per step: the value logged last is the final one
        problems.append(f"{path}: {key} = {value!r}, MLflow run {run_id} has {logged.get(key, 'no such metric')!r}")
    return problems


def check_versions(manifest: dict[str, Any], ctx: _Context) -> Check:
    """Packages now installed at another version than when the stage ran: information, never a failure."""
    changed = [f"{name} {was} -> {ctx.versions.get(name, 'not installed')}"
               for name, was in sorted((manifest.get("versions") or {}).items()) if ctx.versions.get(name) != was]
    return Check("versions", INFO if changed else OK, changed)


# ---------------------------------------------------------------------------------- rendering


def _depth(path: str, report: AuditReport, memo: dict[str, int]) -> int:
    """Longest upstream chain below a node: the deepest branch is drawn first, in full."""
    if path not in memo:
        memo[path] = 0
        memo[path] = 1 + max((_depth(up, report, memo) for up in report.nodes[path].upstream), default=-1)
    return memo[path]


def node_line(node: Node) -> str:
    """`✓ pretrain  models/pretrain  run 1a2b3c4d  @9f8e7d6  ✓outputs ✓inputs ...`"""
    mark = MARKS[FAIL] if node.failed else MARKS[OK]
    checks = " ".join(f"{MARKS[c.status]}{c.name}" for c in node.checks)
    return f"{mark} {node.stage}  {node.path}  run {(node.run_id or '-')[:8]}  @{(node.commit or '-')[:7]}  {checks}"


def render_tree(report: AuditReport) -> str:
    """The lineage from the target down to the downloads; a stage reached twice is drawn once."""
    lines: list[str] = []
    memo: dict[str, int] = {}
    seen: set[str] = set()

    def walk(path: str, prefix: str, branch: str, last: bool) -> None:
        node = report.nodes[path]
        if path in seen:
            lines.append(f"{prefix}{branch}{node.stage}  {node.path}  (see above)")
            return
        seen.add(path)
        lines.append(f"{prefix}{branch}{node_line(node)}")
        inner = prefix + ("    " if last else "│   ") if branch else prefix
        ups = sorted(node.upstream, key=lambda up: (-_depth(up, report, memo), up))
        detail = inner + ("│     " if ups else "      ")
        for check in node.checks:
            if check.status in (FAIL, WARN, INFO):
                lines.extend(f"{detail}{MARKS[check.status]} {check.name}: {p}" for p in check.problems)
        for i, up in enumerate(ups):
            walk(up, inner, "└── " if i == len(ups) - 1 else "├── ", i == len(ups) - 1)

    walk(report.root, "", "", True)
    verdict = "FAILED" if report.failed else "verified"
    return "\n".join([*lines, "", f"audit {verdict}: {len(report.nodes)} stages, {report.seconds:.1f}s"]) + "\n"


def to_markdown(report: AuditReport) -> str:
    """reports/audit.md: a per-stage table, every problem, then the tree."""
    verdict = "**FAILED**" if report.failed else "verified"
    lines = [f"# Audit of `{report.target}`", "", f"Result: {verdict} ({len(report.nodes)} stages, "
             f"{report.seconds:.1f}s). ✓ ok, ✗ failed, ! warning, - not checked, i information.", "",
             "| stage | output | MLflow run | commit | " + " | ".join(c.name for c in _checks(report)) + " |",
             "|---|---|---|---|" + "---|" * len(_checks(report))]
    memo: dict[str, int] = {}
    for path in sorted(report.nodes, key=lambda p: (-_depth(p, report, memo), p)):  # target first, downloads last
        node = report.nodes[path]
        marks = " | ".join(MARKS[c.status] for c in node.checks)
        lines.append(f"| {node.stage} | `{node.path}` | `{node.run_id or '-'}` | `{(node.commit or '-')[:7]}` "
                     f"| {marks} |")
    problems = [f"- {MARKS[c.status]} **{n.stage}** {c.name}: {p}" for n in report.nodes.values()
                for c in n.checks if c.status != OK for p in c.problems]
    lines += ["", "## Findings", "", *(problems or ["None."]), "", "## Lineage", "", "```",
              render_tree(report).rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _checks(report: AuditReport) -> list[Check]:
    return next(iter(report.nodes.values())).checks if report.nodes else []


def to_json(report: AuditReport) -> dict[str, Any]:
    """reports/audit.json: the whole report, with a top-level verdict for scripts."""
    return {"target": report.target, "root": report.root, "failed": report.failed, "seconds": report.seconds,
            "nodes": {path: {**asdict(node), "failed": node.failed} for path, node in report.nodes.items()}}


def write_reports(report: AuditReport, json_out: Path, md_out: Path) -> None:
    """Both report files, each replaced atomically."""
    atomic_write_json(json_out, to_json(report))
    atomic_write_text(md_out, to_markdown(report))


# ---------------------------------------------------------------------------------- --reproduce

SAME, DIFF, CLOSE, EXPECTED, IGNORED = "identical", "differs", "within tolerance", "differs (expected)", "not compared"
REPRO_MARKS = {SAME: "✓", DIFF: "✗", CLOSE: "~", EXPECTED: "~", IGNORED: "-"}
#: Stages whose re-run would test something else than the recorded computation.
NOT_REPRODUCIBLE = {"download": "download fetches its sources from the network: a re-run would test the "
                                "mirrors, not the recorded computation (audit its outputs with `scratchlm audit "
                                "data/raw`)"}
#: Training stages: bf16 autocast, torch.compile and GPU kernels are not bit-exact from run to run, so
#: their weights may differ; their verdict rests on the metrics, floats within TRAIN_REL_TOL.
TRAINING = ("pretrain", "finetune_classifier", "finetune_instruct")
TRAIN_REL_TOL = 0.02
EXACT_MODE = "exact (every output file's sha256; metrics exact, timing not compared)"
TRAINING_MODE = (f"files exact, weights may differ; metrics within {TRAIN_REL_TOL:.0%} (counts exact, "
                 "timing not compared)")
#: Metric keys (or key parts, `seconds.benchmarks`) that measure the machine, not the computation
#: (`train_seconds`, `tokens_per_s`, `mfu`): never compared.
TIMING_KEYS = ("seconds", "_per_s")
#: Output files that render a result and stamp it with the time they were made: never byte-identical,
#: not compared (the result itself is: validate's results.json).
RENDERINGS = {"validate": ("data_docs/", "Great Expectations Data Docs: a rendering of results.json stamped "
                                         "with the validation time")}


@dataclass
class Row:
    """One compared output file or metric: `path` as the repo names it, its status, why if not identical."""

    path: str
    status: str
    detail: str = ""


@dataclass
class ReproduceReport:
    """A stage re-run from its manifest's params and the recorded bytes of its inputs, compared file by file.

    `inputs` lists inputs that no longer match the manifest: then nothing was re-run (it would prove nothing).
    """

    stage: str
    folder: str
    run_id: str | None
    mode: str
    inputs: list[str] = field(default_factory=list)
    files: list[Row] = field(default_factory=list)
    metrics: list[Row] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def reproduced(self) -> bool:
        return not (self.inputs or self.error) and all(r.status != DIFF for r in self.files + self.metrics)


def reproduce_stage(stage: str, repo_root: str | Path = ".") -> ReproduceReport:
    """Re-run `stage` in a scratch folder and compare its outputs with the hashes its manifest recorded.

    The params are the manifest's (not today's params.yaml: the question is whether the recorded run
    reproduces); the inputs are today's files at the recorded paths, first checked against the recorded
    sha256. Data, tokenizer and evaluation stages must reproduce byte for byte; training stages
    (TRAINING) are judged on their metrics within TRAIN_REL_TOL. Raises AuditError on misuse.
    """
    started = time.monotonic()
    root = Path(repo_root).resolve()
    folder, manifest = _reproducible(stage, root)
    report = ReproduceReport(stage, _rel(folder, root), manifest.get("mlflow_run_id"),
                             TRAINING_MODE if stage in TRAINING else EXACT_MODE)
    report.inputs = changed_inputs(manifest, root)
    if not report.inputs:
        with tempfile.TemporaryDirectory(prefix=f"scratchlm-reproduce-{stage}-") as scratch:
            report.error = rerun_stage(stage, manifest, root, Path(scratch))
            if not report.error:
                report.files = compare_outputs(manifest, Path(scratch), report.folder, stage)
                report.metrics = compare_metrics(stage, root / METRICS_DIR, Path(scratch) / METRICS_DIR)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _reproducible(stage: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """The stage's output folder and manifest; AuditError for download, unknown or never-run stages."""
    stages = load_stages(root)
    if stage in NOT_REPRODUCIBLE:
        raise AuditError(f"cannot reproduce {stage}: {NOT_REPRODUCIBLE[stage]}")
    if stage not in stages:
        raise AuditError(f"unknown stage {stage!r} (dvc.yaml has: {', '.join(stages) or 'no stages'})")
    folder = stage_folder(stage, root, stages)
    manifest = (read_manifest(folder) or {}) if folder else {}
    if folder is None or not manifest.get("params") or manifest.get("stage") != stage:
        raise AuditError(f"{stage} has no output with a manifest recording its params (run the stage first)")
    outside = [rel for rel in manifest.get("inputs") or {} if Path(rel).is_absolute() or ".." in Path(rel).parts]
    if outside:  # the re-run links inputs into its scratch folder: only repository paths qualify
        raise AuditError(f"{_rel(folder, root)}/{MANIFEST}: input {outside[0]} is not a path inside the repository")
    return folder, manifest


def changed_inputs(manifest: dict[str, Any], root: Path) -> list[str]:
    """Recorded inputs whose current bytes are not the ones the stage read: a re-run would prove nothing."""
    problems = []
    for rel, entry in sorted((manifest.get("inputs") or {}).items()):
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: input missing")
        elif tree_sha256(path, exclude=(MANIFEST,)) != entry.get("sha256"):
            problems.append(f"{rel}: input changed since the stage read it (sha256 differs)")
    return problems


def rerun_stage(stage: str, manifest: dict[str, Any], root: Path, scratch: Path) -> str:
    """Run the stage's dvc.yaml cmd with cwd `scratch`: "" on success, else why it failed.

    The cmd's paths are relative, so its outputs (and reports/metrics/<stage>.json) land in `scratch`;
    the inputs are symlinks to the repository's files. The repository's own code runs (PYTHONPATH),
    tracking goes to a throwaway SQLite database (`required: false`): the audit leaves no run behind.
    """
    write_rerun_params(stage, manifest["params"], root, scratch / "params.yaml")
    for rel in manifest.get("inputs") or {}:
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch / rel).symlink_to(root / rel, target_is_directory=(root / rel).is_dir())
    (scratch / METRICS_DIR).mkdir(parents=True, exist_ok=True)
    argv = shlex.split(str(load_stages(root)[stage]["cmd"]))
    argv[0] = sys.executable if argv[0] in ("python", "python3") else argv[0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}",
           "PYTHONPATH": os.pathsep.join([str(root), str(root / "src"), os.environ.get("PYTHONPATH", "")]),
           "GIT_CEILING_DIRECTORIES": str(scratch.parent)}  # git_state(): "no commit", never an outer repo
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        env.pop(name, None)
    result = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True)
    if result.returncode == 0:
        return ""
    tail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-3:]
    return f"the re-run failed (exit {result.returncode}): " + " | ".join(line.strip() for line in tail)


def write_rerun_params(stage: str, params: dict[str, Any], root: Path, dest: Path) -> None:
    """params.yaml of the re-run: the manifest's params for the stage, today's tracking section made optional."""
    try:
        current = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        current = {}
    tracking_section = {**(current.get("tracking") or {}), "required": False}
    dest.write_text(yaml.safe_dump({stage: params, "tracking": tracking_section}, sort_keys=False),
                    encoding="utf-8")


def compare_outputs(manifest: dict[str, Any], scratch: Path, folder: str, stage: str) -> list[Row]:
    """Every recorded output file against the re-run's (sha256), plus files only the re-run wrote."""
    recorded, out = manifest.get("outputs") or {}, scratch / folder
    rows = [file_row(stage, folder, rel, entry.get("sha256"), out / rel) for rel, entry in sorted(recorded.items())]
    for path in list_files(out):
        rel = path.relative_to(out).as_posix()
        if rel != MANIFEST and rel not in recorded:
            rows.append(Row(f"{folder}/{rel}", IGNORED, RENDERINGS[stage][1]) if _rendering(stage, rel)
                        else Row(f"{folder}/{rel}", DIFF, "written by the re-run, not in the manifest"))
    return rows


def file_row(stage: str, folder: str, rel: str, recorded: str | None, path: Path) -> Row:
    """One recorded output file: identical, differs, expected to differ (training) or a timestamped rendering."""
    name = f"{folder}/{rel}"
    if path.is_file() and sha256_file(path) == recorded:
        return Row(name, SAME)
    if _rendering(stage, rel):
        return Row(name, IGNORED, RENDERINGS[stage][1])
    if not path.is_file():
        return Row(name, DIFF, "the re-run did not write it")
    if stage in TRAINING:
        return Row(name, EXPECTED, "training is not bit-exact everywhere (bf16, torch.compile, GPU kernels): "
                                   "judged on its metrics")
    return Row(name, DIFF, "sha256 differs from the manifest")


def _rendering(stage: str, rel: str) -> bool:
    return stage in RENDERINGS and rel.startswith(RENDERINGS[stage][0])


def compare_metrics(stage: str, recorded_dir: Path, rerun_dir: Path) -> list[Row]:
    """reports/metrics/<stage>.json, key by key: the repository's against the re-run's.

    The repository's file stands for the recorded run (it is not hashed in the manifest; plain
    `scratchlm audit` checks it against the MLflow run).
    """
    name = (METRICS_DIR / f"{stage}.json").as_posix()
    try:
        was, now = (tracking.flatten_metrics(json.loads((d / f"{stage}.json").read_text(encoding="utf-8")))
                    for d in (recorded_dir, rerun_dir))
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        return [Row(name, DIFF, f"unreadable ({type(error).__name__})")]
    return [metric_row(f"{name}:{key}", stage, was.get(key), now.get(key)) for key in sorted(was | now)]


def metric_row(name: str, stage: str, was: float | None, now: float | None) -> Row:
    """Timing metrics are not compared; counts are exact; training floats within TRAIN_REL_TOL (ppl in log space)."""
    parts = name.rsplit(":", 1)[-1].split(".")
    leaf = parts[-1]
    if any(part == "mfu" or part.endswith(TIMING_KEYS) for part in parts):
        return Row(name, IGNORED, "timing: measures the machine, not the computation")
    if was is None or now is None:
        return Row(name, DIFF, f"recorded {was!r}, re-run {now!r}")
    if _same(was, now):
        return Row(name, SAME)
    counts = was.is_integer() and now.is_integer()
    a, b = (math.log(was), math.log(now)) if leaf.endswith("ppl") and min(was, now) > 0 else (was, now)
    if stage in TRAINING and not counts and math.isclose(a, b, rel_tol=TRAIN_REL_TOL, abs_tol=TRAIN_REL_TOL):
        return Row(name, CLOSE, f"recorded {was:.6g}, re-run {now:.6g} (tolerance {TRAIN_REL_TOL:.0%})")
    return Row(name, DIFF, f"recorded {was!r}, re-run {now!r}")


def render_reproduce(report: ReproduceReport) -> str:
    """The per-file table (✓ identical, ✗ differs, ~ within tolerance / expected, - not compared), then the verdict."""
    lines = [f"reproduce {report.stage}: {report.folder} (run {(report.run_id or '-')[:8]}) re-run from its "
             f"manifest's params; comparison: {report.mode}"]
    lines += [f"  ✗ input  {problem}" for problem in report.inputs]
    if report.inputs:
        lines.append("  not re-run: the inputs are not the bytes the stage read, a re-run would prove nothing")
    lines += [f"  ✗ {report.error}"] if report.error else []
    shown = report.files + [row for row in report.metrics if row.status != SAME]
    lines += [f"  {REPRO_MARKS[r.status]} {r.status:<18} {r.path}" + (f"  ({r.detail})" if r.detail else "")
              for r in shown]
    same = sum(row.status == SAME for row in report.metrics)
    if report.metrics:
        lines.append(f"  {MARKS[OK]} {SAME:<18} {report.metrics[0].path.split(':')[0]}: {same} of "
                     f"{len(report.metrics)} metrics")
    return "\n".join([*lines, "", verdict_line(report)]) + "\n"


def verdict_line(report: ReproduceReport) -> str:
    """`reproduced: clean, 7 of 7 files identical, 0 differences, 9.9s` (or why it was not re-run)."""
    if report.inputs or report.error:
        why = f"{len(report.inputs)} input(s) changed" if report.inputs else "the re-run failed"
        return f"NOT reproduced: {report.stage}, not compared ({why}), {report.seconds:.1f}s"
    rows = report.files + report.metrics
    exact = all(row.status in (SAME, IGNORED) for row in rows)
    verdict = "NOT reproduced" if not report.reproduced else "reproduced" if exact else "reproduced within tolerance"
    return (f"{verdict}: {report.stage}, {sum(r.status == SAME for r in report.files)} of {len(report.files)} "
            f"files identical, {sum(row.status == DIFF for row in rows)} differences, {report.seconds:.1f}s")
