"""The wiring every stage script shares: params, seed, MLflow run, staged outputs, manifest, run record.

A stage script parses its paths (they live in dvc.yaml), then calls `run_stage` with one library
function. The order is what keeps "nothing lost" true in the workspace:

1. params validated, inputs digested, the MLflow run opened;
2. the work writes into a temporary folder beside the output; side files (metrics, plots) are staged
   beside theirs;
3. the manifest is written, the inputs, code and params section are checked unchanged since the
   start (another `dvc exp run` in the same workspace rewrites params.yaml under a running stage),
   and everything is logged to MLflow and the run ended;
4. only then are the output folder and the side files swapped into place and the run record written.

A failure anywhere before step 4 leaves every previous output as it was: DVC does not delete them
before the stage runs (dvc.yaml marks them `persist: true`), and nothing was swapped yet. Known
failures (bad params, bad data, an unreachable tracking server) end the process with a one-line
`error:` message and exit status 1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scratchlm.config.base import ConfigError, Section
from scratchlm.config.loader import nested_params, parse_section, read_params_file
from scratchlm.config.runtime import ExecutorParams, TrackingParams
from scratchlm.data.parallel import Executor, make_executor
from scratchlm.io import DataFormatError, atomic_output_dir, dumps_json, file_hashes, list_files, remove_stale
from scratchlm.launch import is_rank_zero
from scratchlm.lineage.manifest import describe_code, describe_input, manifest_sha256, write_manifest
from scratchlm.lineage.runrecord import git_state, split_timing, upstream_run_ids, utc_now, write_run_record
from scratchlm.lineage.tracker import StageRun, stage_run, start_tracking
from scratchlm.lineage.tracking import TrackingError, dvc_experiment, flatten_metrics

PARAMS_FILE = Path("params.yaml")
METRICS_DIR = Path("reports/metrics")
#: Where the code runs from: the stage's code deps in dvc.yaml are digested here, whatever the cwd
#: (`scratchlm audit --reproduce` runs a stage in a scratch folder with this repository's code).
CODE_ROOT = Path(__file__).resolve().parents[3]  # src/scratchlm/lineage/stage.py: the checkout (installed editable)


class StageConflict(RuntimeError):
    """An input, the code or the stage's params section changed on disk while the stage ran."""


@dataclass
class StageContext:
    """What a stage's work function gets besides its params and temp folder: the MLflow run, and
    `side(path)`, a staged path for a file outside the output folder (a plot) swapped in with it."""

    run: StageRun
    executor_params: ExecutorParams = field(default_factory=ExecutorParams)
    staged: dict[str, Path] = field(default_factory=dict)
    used: list[Executor] = field(default_factory=list)
    publish: list[Callable[[], None]] = field(default_factory=list)
    """Side effects outside the workspace (registering models) to run once every check has passed, just
    before the MLflow run ends: a stage that fails before that publishes nothing."""

    def executor(self, workers: int) -> Executor:
        """Where the stage's per-shard work runs (params.yaml `executor`); `workers` sizes a local pool."""
        executor = make_executor(self.executor_params, workers)
        self.used.append(executor)
        return executor

    def side(self, path: str | Path) -> Path:
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final)
        folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        self.staged[final.as_posix()] = folder / final.name
        return folder / final.name

    def commit(self) -> None:
        """Swap every staged side file into place."""
        for final, staged in self.staged.items():
            os.replace(staged, final)
            staged.parent.rmdir()

    def discard(self) -> None:
        for staged in self.staged.values():
            shutil.rmtree(staged.parent, ignore_errors=True)


Work = Callable[[Section, Path, StageContext], dict[str, Any]]


@dataclass
class Settings:
    """What a stage reads from params.yaml: its validated section, and the two sections that change where
    it logs and computes but never what it writes (tracking, executor), plus its section as written (to
    notice a change on disk while the stage runs)."""

    params: Section
    tracking: TrackingParams
    executor: ExecutorParams
    raw: dict[str, Any]


def load_params(stage: str, path: Path = PARAMS_FILE) -> Settings:
    """The stage's section; for a member of a stage family (`scaling@<rung>`, a dvc.yaml `foreach`), the
    family's section asked for that member, which may read other sections too (a rung reads `pretrain`)."""
    raw = read_params_file(path)
    tracking, executor = (parse_section(name, raw.get(name)) for name in ("tracking", "executor"))
    family, _, member = stage.partition("@")
    params = parse_section(family, raw.get(family))
    reads = [family]
    if member:
        params, also = params.member(member, raw)  # type: ignore[attr-defined]
        reads += also
    elif hasattr(params, "joined"):  # a stage that reads other sections too (scaling_fit: scaling, pretrain)
        params, also = params.joined(raw)
        reads += also
    return Settings(params, tracking, executor, {name: raw.get(name) for name in reads})  # type: ignore[arg-type]


def process_seconds() -> float | None:
    """Seconds since this process started (Linux's /proc, to 10 ms), None elsewhere: a stage's start-up, from
    the interpreter's first instruction to its first line of work, is recorded as `startup_seconds`."""
    try:
        after_name = Path("/proc/self/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        started_ticks = int(after_name[19])  # field 22, starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)


def run_stage(stage: str, inputs: list[str], output: str, work: Work, *, seed: int = 0,
              check: Callable[[], None] | None = None) -> None:
    """Run one stage end to end; exits the process with a one-line message on a known failure.

    `check`, if given, runs after the work and before anything is swapped in: when it raises (validate's
    critical expectations), the output is kept beside the real one as `<output>.failed` for the user to
    read, the previous output stays in place, and the stage and its run fail.
    """
    try:
        _run(stage, inputs, output, work, seed, check)
    except (ConfigError, DataFormatError, TrackingError, StageConflict, *_stage_errors()) as error:
        if os.environ.get("SCRATCHLM_DEBUG"):
            raise
        print(f"error: {stage}: {str(error).strip().splitlines()[0]} ({type(error).__name__}; "
              "SCRATCHLM_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


def _stage_errors() -> tuple[type[BaseException], ...]:
    """Failures that are bad input or a fault outside the code: reported in one line, no traceback.

    ValueError covers the libraries' own complaints about bad input (a corrupt parquet shard, a
    malformed suite or manifest, a token file shorter than one window); a genuine bug elsewhere still
    shows its traceback with SCRATCHLM_DEBUG=1.
    """
    errors: list[type[BaseException]] = [ValueError, OSError]
    for module, name in (("scratchlm.data.sources", "SourceError"),
                         ("scratchlm.data.validation", "DataValidationError"),
                         ("scratchlm.training.module", "NonFiniteLossError")):
        if module in sys.modules:  # only a module the stage loaded can have raised its error (and GX takes seconds)
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


@contextlib.contextmanager
def full_disk_names(output: str) -> Iterator[None]:
    """A full disk (or a file-size limit) while writing names the output; the old one is still in place."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise OSError(error.errno, f"{output}: could not be written ({error.strerror}); "
                                   "the previous output is kept") from None


def stage_code(stage: str, root: Path = CODE_ROOT) -> list[str]:
    """The stage's code deps in dvc.yaml (its `.py` files): what its manifest's code digest covers."""
    try:
        stages = (yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return []
    family, _, member = stage.partition("@")
    spec = stages.get(family, {})
    deps = (spec.get("do", {}) if member else spec).get("deps") or []  # a family's code deps are not templated
    return sorted(p for p in (next(iter(d)) if isinstance(d, dict) else str(d) for d in deps) if p.endswith(".py"))


@dataclass
class Watch:
    """What the stage read, as it was when it started: (mtime, size, inode) of every file of its inputs
    and code, and its params section. A change by the end means the output may not be what the manifest
    says it was made from, so it is not swapped in."""

    stage: str
    sections: dict[str, Any]
    roots: list[Path]
    files: dict[str, tuple[int, int, int]]

    @classmethod
    def start(cls, stage: str, sections: dict[str, Any], roots: list[Path]) -> Watch:
        return cls(stage, sections, roots, _stats(roots))

    def check(self) -> None:
        why = "another `dvc exp run` or an edit in this workspace?"
        advice = "the output was not replaced; run experiments side by side with `dvc exp run --queue`"
        try:
            raw = read_params_file(PARAMS_FILE)
        except ConfigError:
            raw = {}
        for name, section in self.sections.items():
            if raw.get(name, "unreadable") != section:
                raise StageConflict(f"{PARAMS_FILE}: the {name} section changed while the stage ran ({why}); "
                                    f"{advice}")
        now = _stats(self.roots)
        changed = sorted(path for path in set(self.files) | set(now) if now.get(path) != self.files.get(path))
        if changed:
            raise StageConflict(f"{changed[0]} changed while the stage ran ({why}); {advice}")


def _stats(roots: list[Path]) -> dict[str, tuple[int, int, int]]:
    stats = {}
    for root in roots:
        for file in (list_files(root) if root.is_dir() else [root] if root.exists() else []):
            st = file.stat()
            stats[file.as_posix()] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stats


def keep_failed(tmp: Path, output: str) -> str:
    """Move a finished but rejected output (validate's report of a critical failure) to `<output>.failed`."""
    failed = Path(f"{output}.failed")
    shutil.rmtree(failed, ignore_errors=True)
    tmp.rename(failed)
    return failed.as_posix()


def _run(stage: str, inputs: list[str], output: str, work: Work, seed: int,
         check: Callable[[], None] | None) -> None:
    settings = load_params(stage)
    params, tracking = settings.params, settings.tracking
    missing = [path for path in inputs if not Path(path).exists()]
    if missing:
        raise DataFormatError(f"input {missing[0]} does not exist (run the stage that produces it first)")
    seed_everything(seed)
    if not is_rank_zero():
        # a worker of a multi-process launch (DDP/FSDP): it trains, rank 0 alone tracks and writes
        with tempfile.TemporaryDirectory() as scratch:
            work(params, Path(scratch), StageContext(StageRun(None)))
        return
    started, clock = utc_now(), time.monotonic()
    tracker = start_tracking(stage, tracking)  # MLflow loads in its own process while the stage prepares
    code_files = stage_code(stage)
    watch = Watch.start(stage, settings.raw, [Path(p) for p in inputs] + [CODE_ROOT / p for p in code_files])
    described = {path: describe_input(path) for path in sorted(inputs)}
    code = describe_code(code_files, CODE_ROOT)
    commit, dirty = git_state()
    tags = {"git_commit": commit or "unknown", "git_dirty": str(dirty).lower()}
    if exp := dvc_experiment():
        tags["dvc_exp"] = exp
    tags.update({f"upstream.{name}": run_id for name, run_id in upstream_run_ids(described).items()})
    with stage_run(stage, tracking, tags, tracker) as run:
        # a stage reading several sections logs them nested as its manifest records them (scaling.rungs.xs.n_embd)
        run.log_params(params.output_params() if nested_params(stage) else params.model_dump(mode="json"))
        run.log_inputs(described)
        ctx = StageContext(run, settings.executor)
        try:
            with full_disk_names(output), atomic_output_dir(output) as tmp:
                startup = process_seconds()
                metrics, timing = split_timing(work(params, tmp, ctx))
                if startup is not None:
                    timing["startup_seconds"] = round(startup, 2)
                metrics_file = ctx.side(METRICS_DIR / f"{stage}.json")
                metrics_file.write_text(dumps_json(metrics), encoding="utf-8")
                write_manifest(tmp, stage=stage, params=params.output_params(), inputs=described, code=code,
                               other_outputs={final: file_hashes(staged) for final, staged in ctx.staged.items()})
                digest = manifest_sha256(tmp) or ""
                watch.check()
                run.set_tags({"manifest_sha256": digest})
                run.log_metrics({**flatten_metrics(metrics), **flatten_metrics(timing)})
                run.log_artifact(metrics_file, artifact_path="metrics")
                run.log_artifact(tmp / "manifest.json")
                _check(check, tmp, output)
                for publish in ctx.publish:
                    publish()
                run.end()
            ctx.commit()
        except BaseException:
            ctx.discard()
            raise
    if check is not None:
        shutil.rmtree(f"{output}.failed", ignore_errors=True)  # an earlier run's rejected output is stale now
    try:  # after the swap, so a failure is a warning: the outputs are in place and the MLflow run has the digest
        write_run_record(stage, output=output, manifest_sha256=digest, run_id=run.run_id,
                         experiment=tracking.experiment if run.enabled else None, started=started,
                         seconds=time.monotonic() - clock, timing=timing, dvc_exp=exp, commit=commit, dirty=dirty,
                         executor=[executor.describe() for executor in ctx.used], store=run.store)
    except OSError as error:
        print(f"warning: {stage}: its run record could not be written ({error}); `scratchlm audit` will find "
              f"the MLflow run {run.run_id} by the manifest's digest", file=sys.stderr)


def _check(check: Callable[[], None] | None, tmp: Path, output: str) -> None:
    """Run the stage's check; a failing one keeps the rejected output as `<output>.failed` and says so."""
    if check is None:
        return
    try:
        check()
    except Exception as error:
        failed = keep_failed(tmp, output)
        raise type(error)(f"{error} (the rejected output is in {failed}/; the previous output is kept)") from None
