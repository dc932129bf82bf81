"""`scratchlm audit --reproduce STAGE`: re-run one stage from its record and compare what it writes.

The stage's dvc.yaml cmd runs in a scratch folder with the params its manifest recorded and the recorded
bytes of its inputs (checked first), and every output file, the manifest itself and the stage's other
files are compared with the recorded sha256 (training stages: the metrics within a tolerance, see
TRAINING). Matching hashes say the record is sufficient to rebuild the output, which checking the hashes
alone cannot say.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scratchlm.audit.checks import METRICS_DIR, _same, input_problems
from scratchlm.audit.model import MARKS, OK, AuditError
from scratchlm.audit.walk import load_stages, stage_folder
from scratchlm.config.loader import nested_params
from scratchlm.io import list_files, sha256_file, tree_sha256
from scratchlm.lineage import tracking
from scratchlm.lineage.manifest import MANIFEST, manifest_folder, read_manifest
from scratchlm.lineage.runrecord import is_timing
from scratchlm.stages import TRAINING

SAME, DIFF, CLOSE, EXPECTED, IGNORED = "identical", "differs", "within tolerance", "differs (expected)", "not compared"
REPRO_MARKS = {SAME: "✓", DIFF: "✗", CLOSE: "~", EXPECTED: "~", IGNORED: "-"}
#: Stages whose re-run would test something else than the recorded computation.
NOT_REPRODUCIBLE = {"download": "download fetches its sources from the network: a re-run would test the "
                                "mirrors, not the recorded computation (audit its outputs with `scratchlm audit "
                                "data/raw`)"}
#: Training stages (`scratchlm.stages.TRAINING`): bf16 autocast, torch.compile and GPU kernels are not bit-exact
#: from run to run, so their weights may differ; their verdict rests on the metrics, floats within TRAIN_REL_TOL.
TRAIN_REL_TOL = 0.02
EXACT_MODE = "exact (every output file's sha256; metrics exact, timing not compared)"
TRAINING_MODE = (f"files exact, weights may differ; metrics within {TRAIN_REL_TOL:.0%} (counts exact, "
                 "timing not compared)")


def training(stage: str) -> bool:
    """A training stage, or a member of a training family (`scaling@<rung>`)."""
    return stage.partition("@")[0] in TRAINING


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
    report = ReproduceReport(stage, folder.relative_to(root).as_posix(),
                             TRAINING_MODE if training(stage) else EXACT_MODE)
    report.inputs = changed_inputs(manifest, root)
    if not report.inputs:
        with tempfile.TemporaryDirectory(prefix=f"scratchlm-reproduce-{stage}-") as scratch:
            report.error = rerun_stage(stage, manifest, root, Path(scratch))
            if not report.error:
                report.files = compare_outputs(manifest, Path(scratch), report.folder, stage, root)
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
        raise AuditError(f"{folder.relative_to(root).as_posix()}/{MANIFEST}: input {outside[0]} is not a path "
                         "inside the repository")
    return folder, manifest


def changed_inputs(manifest: dict[str, Any], root: Path) -> list[str]:
    """Recorded inputs whose current bytes (or producer manifest) are not the ones the stage read."""
    return input_problems(manifest.get("inputs") or {}, root, lambda path: tree_sha256(path, exclude=(MANIFEST,)))


def rerun_stage(stage: str, manifest: dict[str, Any], root: Path, scratch: Path) -> str:
    """Run the stage's dvc.yaml cmd with cwd `scratch`: "" on success, else why it failed.

    The cmd's paths are relative, so its outputs (and reports/metrics/<stage>.json) land in `scratch`;
    the inputs are symlinks to the repository's files. The repository's own code runs (PYTHONPATH),
    tracking goes to a throwaway SQLite database (`required: false`): the audit leaves no run behind.
    """
    write_rerun_params(stage, manifest["params"], root, scratch / "params.yaml")
    for rel in sorted(manifest.get("inputs") or {}):
        if any(parent.is_symlink() for parent in (scratch / rel).parents):
            continue  # inside an input folder linked already: never create anything through the link
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch / rel).symlink_to(root / rel, target_is_directory=(root / rel).is_dir())
    for rel in manifest.get("inputs") or {}:  # a file input's producer manifest, which the stage records
        producer = manifest_folder(root / rel, root)
        if producer is not None and producer != root / rel:
            link = scratch / producer.relative_to(root) / MANIFEST
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(producer / MANIFEST)
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
    sections = params if nested_params(stage) else {stage: params}  # a stage reading several: nested already
    dest.write_text(yaml.safe_dump({**sections, "tracking": tracking_section}, sort_keys=False), encoding="utf-8")


def compare_outputs(manifest: dict[str, Any], scratch: Path, folder: str, stage: str, root: Path) -> list[Row]:
    """Every recorded output file against the re-run's (sha256), the manifest itself, the stage's files
    outside the folder (its plots; the metrics file is compared key by key), and files only the re-run wrote."""
    recorded, out = manifest.get("outputs") or {}, scratch / folder
    rows = [file_row(stage, folder, rel, entry.get("sha256"), out / rel) for rel, entry in sorted(recorded.items())]
    rows.append(file_row(stage, folder, MANIFEST, sha256_file(root / folder / MANIFEST), out / MANIFEST))
    metrics_file = (METRICS_DIR / f"{stage}.json").as_posix()
    rows += [file_row(stage, "", name, entry.get("sha256"), scratch / name)
             for name, entry in sorted((manifest.get("other_outputs") or {}).items()) if name != metrics_file]
    for path in list_files(out):
        rel = path.relative_to(out).as_posix()
        if rel != MANIFEST and rel not in recorded:
            rows.append(Row(f"{folder}/{rel}", DIFF, "written by the re-run, not in the manifest"))
    return rows


def file_row(stage: str, folder: str, rel: str, recorded: str | None, path: Path) -> Row:
    """One recorded output file: identical, differs, expected to differ (training) or a timestamped rendering."""
    name = f"{folder}/{rel}" if folder else rel
    if path.is_file() and sha256_file(path) == recorded:
        return Row(name, SAME)
    if not path.is_file():
        return Row(name, DIFF, "the re-run did not write it")
    if training(stage):
        return Row(name, EXPECTED, "training is not bit-exact everywhere (bf16, torch.compile, GPU kernels): "
                                   "judged on its metrics")
    return Row(name, DIFF, "sha256 differs from the manifest")


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
    key = name.rsplit(":", 1)[-1]
    leaf = key.split(".")[-1]
    if is_timing(key):
        return Row(name, IGNORED, "timing: measures the machine, not the computation")
    if was is None or now is None:
        return Row(name, DIFF, f"recorded {was!r}, re-run {now!r}")
    if _same(was, now):
        return Row(name, SAME)
    counts = was.is_integer() and now.is_integer()
    a, b = (math.log(was), math.log(now)) if leaf.endswith("ppl") and min(was, now) > 0 else (was, now)
    if training(stage) and not counts and math.isclose(a, b, rel_tol=TRAIN_REL_TOL, abs_tol=TRAIN_REL_TOL):
        return Row(name, CLOSE, f"recorded {was:.6g}, re-run {now:.6g} (tolerance {TRAIN_REL_TOL:.0%})")
    return Row(name, DIFF, f"recorded {was!r}, re-run {now!r}")


def render_reproduce(report: ReproduceReport) -> str:
    """The per-file table (✓ identical, ✗ differs, ~ within tolerance / expected, - not compared), then the verdict."""
    lines = [f"reproduce {report.stage}: {report.folder} re-run from its manifest's params; comparison: "
             f"{report.mode}"]
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
