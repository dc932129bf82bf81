"""Every check the audit runs on one stage output, in the order the tree shows them.

- `outputs`: every file still has the sha256 (and size) its manifest recorded, nothing was added, and
  the stage's files outside the folder (metrics, plots) match too;
- `inputs`: every input still digests as the stage read it, and its producer's manifest is still the
  one the stage read (a re-hashed manifest has another digest);
- `lock`: the manifest against what `dvc.lock` records for the stage: params key by key, the md5 of
  every dep (code and data) and of every out. After `dvc commit -f` of edited params or code, dvc.lock
  describes an output that was never made: this is where that shows;
- `dvc`: `dvc status` finds the stage's deps and outs as dvc.lock has them;
- `record`: the stage's run record names this output's manifest digest (or an MLflow run does);
- `git`: the recorded commit exists; a dirty tree then, or code changed since, is a warning;
- `mlflow`: the run exists, is live and finished, recorded this manifest digest, and carries the
  manifest's params, the metrics file's values and the run record's timing, in the store the run record
  names (`walk.run_store`); a run in a local store out of reach (another machine's) is information;
- `versions`: packages whose installed version differs from the recorded one (information only).
"""

from __future__ import annotations

import ast
import configparser
import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scratchlm.audit.model import FAIL, INFO, OK, SKIP, WARN, Check
from scratchlm.audit.walk import Context, Subject, data_deps
from scratchlm.config.base import ConfigError
from scratchlm.config.loader import nested_params, parse_section
from scratchlm.io import DataFormatError, dvc_dir_md5, list_files
from scratchlm.lineage import tracking
from scratchlm.lineage.manifest import FORMAT, MANIFEST, manifest_folder, manifest_sha256, part_sha256, read_manifest
from scratchlm.lineage.runrecord import record_path
from scratchlm.stages import SECTION_PATHS

METRICS_DIR = Path("reports/metrics")
REL_TOL = 1e-9


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL)


# ---------------------------------------------------------------------------------- bytes


def check_outputs(subject: Subject, ctx: Context) -> Check:
    """Every recorded output file has its recorded size and sha256; nothing unrecorded was added."""
    manifest, folder = subject.manifest, subject.folder
    if not manifest:
        return Check("outputs", FAIL, [f"{subject.rel}/{MANIFEST}: missing, empty or not JSON"])
    recorded = manifest.get("outputs") or {}
    problems = []
    for rel, entry in sorted(recorded.items()):
        path, name = folder / rel, f"{subject.rel}/{rel}"
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.get("bytes") or ctx.file(path)["sha256"] != entry.get("sha256"):
            problems.append(f"{name}: changed (sha256 differs from the manifest)")
    for path in list_files(folder):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST and rel not in recorded:
            problems.append(f"{ctx.rel(path)}: not in the manifest (added after the stage ran)")
    for name, entry in sorted((manifest.get("other_outputs") or {}).items()):
        path = ctx.root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif ctx.file(path)["sha256"] != entry.get("sha256"):
            problems.append(f"{name}: changed (sha256 differs from the manifest)")
    return Check.of("outputs", problems)


def input_problems(recorded: dict[str, Any], root: Path, content: Callable[[Path], str]) -> list[str]:
    """Recorded inputs that are missing, whose bytes changed, or whose producer's manifest is another one.

    `content` digests an input as `lineage.describe_input` did; the same lines serve `audit` and
    `audit --reproduce` (which re-runs nothing when there are any).
    """
    problems = []
    for rel, entry in sorted(recorded.items()):
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: input missing")
            continue
        if content(path) != entry.get("sha256"):
            problems.append(f"{rel}: input changed since the stage read it (sha256 differs)")
        if then := entry.get("producer_part"):
            problems += part_problems(rel, path, root, then)
        if then := entry.get("producer_manifest"):
            folder = manifest_folder(path, root)
            now = manifest_sha256(folder) if folder else None
            if now != then:
                where = f"{folder.relative_to(root).as_posix()}/{MANIFEST}" if folder else "its producer's manifest"
                problems.append(f"{rel}: {where} is not the one the stage read (sha256 {str(now)[:12]} now, "
                                f"{then[:12]} then): its output was re-made or its manifest rewritten")
    return problems


def part_problems(rel: str, path: Path, root: Path, then: str) -> list[str]:
    """An input that is a part of a producer's output: the producer's manifest entries for it are the ones
    the stage read."""
    folder = manifest_folder(path, root)
    try:
        now = part_sha256(read_manifest(folder) or {}, path.relative_to(folder)) if folder else None
    except DataFormatError:
        now = None
    if now == then:
        return []
    where = f"{folder.relative_to(root).as_posix()}/{MANIFEST}" if folder else "its producer's manifest"
    return [f"{rel}: its entries in {where} are not the ones the stage read (sha256 {str(now)[:12]} now, "
            f"{then[:12]} then): its producer's output was re-made or its manifest rewritten"]


def check_inputs(subject: Subject, ctx: Context) -> Check:
    """Each input digests as when the stage read it, from the producer manifest it read.

    A dvc.yaml data dep missing from the manifest's inputs is a warning: DVC tracks it, but the
    manifest cannot say which bytes of it the stage saw.
    """
    recorded = subject.manifest.get("inputs") or {}
    unrecorded = [f"{p}: a dvc.yaml dep of {subject.stage} that its manifest does not record"
                  for p in data_deps(subject.stage, ctx) if p not in recorded]
    return Check.of("inputs", input_problems(recorded, ctx.root, ctx.content), unrecorded)


# ---------------------------------------------------------------------------------- dvc.lock


def check_lock(subject: Subject, ctx: Context) -> Check:
    """The manifest against the stage's dvc.lock entry: params, every dep's md5, every out's md5."""
    if ctx.lock is None:
        return Check("lock", SKIP, ["not checked: no dvc.lock in the repository"])
    entry = ctx.lock.get(subject.stage)
    if entry is None:
        if subject.stage in ctx.stages:
            return Check("lock", FAIL, [f"dvc.lock has no entry for {subject.stage}"])
        return Check("lock", WARN, [f"stage {subject.stage!r} is not in dvc.yaml"])
    if not subject.manifest:
        return Check("lock", SKIP, [f"not checked: {subject.rel} has no readable manifest"])
    if subject.manifest.get("format") != FORMAT:
        return Check("lock", FAIL, [f"{subject.rel}/{MANIFEST}: format {subject.manifest.get('format', 1)} "
                                    f"(written by an older scratchlm, without DVC hashes): re-run {subject.stage}"])
    warnings: list[str] = []
    failures = (param_disagreements(subject, entry) + dep_disagreements(subject, entry, warnings)
                + out_disagreements(subject, entry, ctx, warnings))
    return Check.of("lock", failures, warnings)


def same_param(a: str | None, b: str | None) -> bool:
    """Whether two flattened param values (MLflow's strings) hold the same data. A list of mappings (the
    candidates' shapes) is one string whose keys come in the order they were written: params.yaml's in
    dvc.lock and MLflow, sorted in the manifest's JSON. The data, not the spelling, is what must agree."""
    if a == b:
        return True
    try:
        return a is not None and b is not None and ast.literal_eval(a) == ast.literal_eval(b)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def param_disagreements(subject: Subject, entry: dict[str, Any]) -> list[str]:
    """Params dvc.lock records for the stage that are not the ones its output was made with, key by key."""
    locked = (entry.get("params") or {}).get("params.yaml") or {}
    if nested_params(subject.stage):
        return nested_param_disagreements(subject, locked)
    if subject.stage not in locked:
        return []
    raw = locked[subject.stage]
    try:
        expected = parse_section(subject.stage, raw).output_params() if subject.stage in SECTION_PATHS else raw or {}
    except ConfigError as error:
        return [f"params: dvc.lock's {subject.stage} section is not valid ({error})"]
    lock, made = tracking.flatten(expected), tracking.flatten(subject.manifest.get("params") or {})
    return [f"param {subject.stage}.{key}: dvc.lock has {lock.get(key)!r}, the output was made with "
            f"{made.get(key)!r}" for key in sorted(lock.keys() | made.keys())
            if not same_param(lock.get(key), made.get(key))]


def nested_param_disagreements(subject: Subject, locked: dict[str, Any]) -> list[str]:
    """A stage that reads several sections (a rung reads `scaling.rungs.<rung>`, `pretrain`, …): each of
    dvc.lock's param keys is a path in the manifest's params, nested by section."""
    made, problems = subject.manifest.get("params") or {}, []
    for key, raw in sorted(locked.items()):
        section, *path = key.split(".")
        value: Any = made
        for part in (section, *path):
            value = value.get(part, "<absent>") if isinstance(value, dict) else "<absent>"
        try:
            expected = parse_section(section, raw).output_params() if not path and section in SECTION_PATHS else raw
        except ConfigError as error:
            problems.append(f"params: dvc.lock's {key} is not valid ({error})")
            continue
        lock = tracking.flatten({key: expected}) if isinstance(expected, dict) else {key: str(expected)}
        have = tracking.flatten({key: value}) if isinstance(value, dict) else {key: str(value)}
        problems += [f"param {name}: dvc.lock has {lock.get(name)!r}, the output was made with {have.get(name)!r}"
                     for name in sorted(lock.keys() | have.keys()) if not same_param(lock.get(name), have.get(name))]
    return problems


def dep_disagreements(subject: Subject, entry: dict[str, Any], warnings: list[str]) -> list[str]:
    """Deps whose md5 in dvc.lock is not the md5 of what the stage read (its code and its inputs)."""
    code, inputs = subject.manifest.get("code") or {}, subject.manifest.get("inputs") or {}
    problems = []
    for dep in entry.get("deps") or []:
        path, locked = dep.get("path"), dep.get("md5")
        read = code.get(path) or inputs.get(path)
        if read is None:
            warnings.append(f"dep {path}: in dvc.lock, not recorded in the manifest")
        elif read.get("md5") != locked:
            problems.append(f"dep {path}: dvc.lock has md5 {locked}, the stage read {read.get('md5')}")
    return problems


def out_disagreements(subject: Subject, entry: dict[str, Any], ctx: Context, warnings: list[str]) -> list[str]:
    """Outs whose md5 in dvc.lock is not the one of the files the manifest records (named from DVC's cache)."""
    recorded = {rel: e.get("md5") for rel, e in (subject.manifest.get("outputs") or {}).items()}
    manifest_file = subject.folder / MANIFEST
    if manifest_file.is_file():
        recorded[MANIFEST] = ctx.file(manifest_file)["md5"]
    other = subject.manifest.get("other_outputs") or {}
    problems = []
    for out in entry.get("outs") or []:
        path, locked = out.get("path"), out.get("md5")
        if path == subject.rel:
            made = dvc_dir_md5(recorded)
            if made != locked:
                named = _differing_files(ctx.root, str(locked), recorded)
                problems.append(f"out {path}: dvc.lock has md5 {locked}, the manifest's files give {made}"
                                + (f" (differ: {', '.join(named)})" if named else ""))
        elif path in other:
            if other[path].get("md5") != locked:
                problems.append(f"out {path}: dvc.lock has md5 {locked}, the manifest recorded "
                                f"{other[path].get('md5')}")
        else:
            warnings.append(f"out {path}: in dvc.lock, not recorded in the manifest")
    return problems


def _differing_files(root: Path, dir_md5: str, recorded: dict[str, str | None]) -> list[str]:
    """The files of a folder whose md5 in DVC's `.dir` listing differs from `recorded` (first five)."""
    listing_file = _dvc_cache(root) / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    try:
        listing = {item["relpath"]: item["md5"] for item in json.loads(listing_file.read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return sorted(rel for rel in listing.keys() | recorded.keys() if listing.get(rel) != recorded.get(rel))[:5]


def _dvc_cache(root: Path) -> Path:
    """DVC's local cache: `cache.dir` of .dvc/config.local or .dvc/config (relative to .dvc/), else .dvc/cache."""
    for name in ("config.local", "config"):
        parser = configparser.ConfigParser()
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except configparser.Error:
            continue
        if parser.has_option("cache", "dir"):
            return (root / ".dvc" / parser.get("cache", "dir")).resolve()
    return root / ".dvc" / "cache"


def _describe_change(change: Any) -> str:
    """One line per DVC status entry, e.g. `changed outs: data/clean (modified)`."""
    if isinstance(change, dict):
        return "; ".join(f"{kind}: " + (", ".join(f"{p} ({s})" for p, s in sorted(items.items()))
                                        if isinstance(items, dict) else str(items))
                         for kind, items in change.items())
    return str(change)


def check_dvc(subject: Subject, ctx: Context) -> Check:
    """The stage's deps and outs against dvc.lock, as `dvc status` sees them now."""
    status = ctx.dvc_status.result()
    if status is None:
        return Check("dvc", SKIP, ["not checked: no dvc.lock in the repository"])
    if isinstance(status, str):
        return Check("dvc", FAIL, [status])
    if subject.stage not in ctx.stages:
        return Check("dvc", WARN, [f"stage {subject.stage!r} is not in dvc.yaml"])
    changes = status.get(subject.stage)
    if not changes:
        return Check("dvc", OK)
    lines = [_describe_change(change) for change in (changes if isinstance(changes, list) else [changes])]
    return Check("dvc", FAIL, [f"dvc.lock: {line}" for line in lines])


# ---------------------------------------------------------------------------------- the run


def check_record(subject: Subject, ctx: Context) -> Check:
    """The stage's run record names this output and its manifest digest (or an MLflow run recorded it)."""
    path = record_path(subject.stage).as_posix()
    if subject.record_error:
        return Check("record", FAIL, [subject.record_error])
    record = subject.record
    if record is None:
        return Check("record", FAIL, [f"{path}: missing (no record of the run that wrote {subject.rel})"])
    failures = []
    if record.get("output") != subject.rel:
        failures.append(f"{path} names the output {record.get('output')!r}, not {subject.rel}")
    if record.get("manifest_sha256") == subject.digest:
        return Check.of("record", failures)
    if subject.run_note:
        return Check.of("record", failures, [subject.run_note])
    failures.append(f"{path} records manifest sha256 {str(record.get('manifest_sha256'))[:12]}, but "
                    f"{subject.rel}/{MANIFEST} has {str(subject.digest)[:12]} and no MLflow run recorded it: "
                    "the manifest changed after its run")
    return Check.of("record", failures)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)


def check_git(subject: Subject, ctx: Context) -> Check:
    """The recorded commit exists; a dirty tree then, or code changed since, is only a warning."""
    if subject.run_id is None and not _record_vouches(subject):
        return Check("git", SKIP, ["not checked: no run record or MLflow run vouches for this output"])
    commit = subject.commit
    if not commit:
        return Check("git", FAIL, ["no git commit recorded"])
    if _git(ctx.root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return Check("git", FAIL, [f"commit {commit} does not exist in this repository"])
    warnings = ["produced from a dirty working tree"] if subject.dirty else []
    changed = [rel for rel, entry in sorted((subject.manifest.get("code") or {}).items())
               if not (ctx.root / rel).is_file() or ctx.file(ctx.root / rel)["sha256"] != entry.get("sha256")]
    if changed:
        warnings.append(f"code changed since the stage ran (at {commit[:7]}): {', '.join(changed)}")
    return Check.of("git", [], warnings)


def _record_vouches(subject: Subject) -> bool:
    return bool(subject.record) and (subject.record or {}).get("manifest_sha256") == subject.digest


def check_mlflow(subject: Subject, ctx: Context) -> Check:
    """The run exists, is live and finished, recorded this manifest, and carries its params and metrics."""
    run_id = subject.run_id
    if run_id is None:
        if _record_vouches(subject):
            return _untracked(subject, ctx)
        return Check("mlflow", SKIP, ["not checked: no run record or MLflow run vouches for this output"])
    uri = subject.store_uri
    if uri is None:
        return Check("mlflow", INFO, [subject.unreachable])
    try:
        run = tracking.get_run_summary(run_id, uri)
    except tracking.TrackingError as error:
        return Check("mlflow", FAIL, [f"MLflow run {run_id} not checked: {error}"])
    if run is None:
        return Check("mlflow", FAIL, [f"MLflow run {run_id} not found in {uri}"])
    if run["lifecycle_stage"] == "deleted":
        return Check("mlflow", FAIL, [f"MLflow run {run_id} is deleted"])
    problems = [] if run["status"] == "FINISHED" else [f"MLflow run {run_id} has status {run['status']}"]
    if (logged := run["tags"].get("manifest_sha256")) != subject.digest:
        problems.append(f"MLflow run {run_id} recorded manifest sha256 {str(logged)[:12]}, the output's is "
                        f"{str(subject.digest)[:12]}")
    for key, value in sorted(tracking.flatten(subject.manifest.get("params") or {}).items()):
        if not same_param(run["params"].get(key), value):
            problems.append(f"param {key}: manifest {value!r}, MLflow run {run_id} {run['params'].get(key)!r}")
    timing = (subject.record or {}).get("timing") if _record_vouches(subject) else None
    problems += _metric_problems(subject.stage, run_id, run["metrics"], ctx, timing or {}, uri)
    return Check.of("mlflow", problems)


def _untracked(subject: Subject, ctx: Context) -> Check:
    """A run record that names no MLflow run: fine where the stage was never tracked, a failure where MLflow
    has runs of the stage and none recorded this output (a forger need only null the record's run id)."""
    try:
        runs = tracking.runs_with_manifest(subject.stage, None, ctx.uri)
    except tracking.TrackingError as error:
        return Check("mlflow", FAIL, [f"not checked: {error}"])
    if runs:
        return Check("mlflow", FAIL, [f"{record_path(subject.stage).as_posix()} names no MLflow run (tracking off), "
                                      f"but MLflow has {len(runs)} run(s) of {subject.stage} and none recorded this "
                                      f"manifest ({str(subject.digest)[:12]})"])
    return Check("mlflow", WARN, ["no MLflow run recorded (tracking was off when the stage ran)"])


def _metric_problems(stage: str, run_id: str, logged: dict[str, float], ctx: Context,
                     timing: dict[str, Any], uri: str) -> list[str]:
    """Keys of reports/metrics/<stage>.json (and of the run record's timing) whose value the run does not carry."""
    path = METRICS_DIR / f"{stage}.json"
    try:
        metrics = json.loads((ctx.root / path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return [f"{path}: unreadable ({type(error).__name__})"]
    sources = [(path.as_posix(), metrics if isinstance(metrics, dict) else {}),
               (record_path(stage).as_posix() + " timing", timing)]
    problems = []
    for name, values in sources:
        for key, value in sorted(tracking.flatten_metrics(values).items()):
            if key in logged and _same(value, logged[key]):
                continue
            if any(_same(value, v) for v in tracking.last_logged_values(run_id, key, uri)):
                continue  # also logged per step: the value logged last is the final one
            problems.append(f"{name}: {key} = {value!r}, MLflow run {run_id} has "
                            f"{logged.get(key, 'no such metric')!r}")
    return problems


def check_versions(subject: Subject, ctx: Context) -> Check:
    """Packages now installed at another version than when the stage ran: information, never a failure."""
    recorded = (subject.record or {}).get("versions") if _record_vouches(subject) else None
    changed = [f"{name} {was} -> {ctx.versions.get(name, 'not installed')}"
               for name, was in sorted((recorded or {}).items()) if ctx.versions.get(name) != was]
    return Check("versions", INFO if changed else OK, changed)


CHECKS = [check_outputs, check_inputs, check_lock, check_dvc, check_record, check_git, check_mlflow, check_versions]
