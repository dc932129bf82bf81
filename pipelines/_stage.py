"""The wiring every stage script shares: params, seed, MLflow run, atomic output, metrics, manifest.

A stage script parses its paths (they live in dvc.yaml), then calls `run_stage` with one library
function. Known failures (bad params, bad data, an unreachable tracking server) end the process
with a one-line `error:` message and exit status 1, leaving the previous output in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scratchlm.config import ConfigError, Section, TrackingParams, parse_section
from scratchlm.io import DataFormatError, atomic_output_dir, atomic_write_json
from scratchlm.launch import is_rank_zero
from scratchlm.lineage import describe_input, git_state, upstream_run_ids, utc_now, write_manifest
from scratchlm.tracking import StageRun, TrackingError, dvc_experiment, flatten_metrics, stage_run

PARAMS_FILE = Path("params.yaml")
METRICS_DIR = Path("reports/metrics")

Work = Callable[[Section, Path, Any], dict[str, Any]]


def load_params(section: str, path: Path = PARAMS_FILE) -> tuple[Section, TrackingParams]:
    """This stage's validated section plus the tracking section (which changes no output bytes)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read params ({str(error).splitlines()[0]})") from None
    tracking = parse_section("tracking", raw.get("tracking"))
    return parse_section(section, raw.get(section)), tracking  # type: ignore[return-value]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)


def run_stage(stage: str, inputs: list[str], output: str, work: Work, *, seed: int = 0,
              check: Callable[[], None] | None = None) -> None:
    """Run one stage end to end; exits the process with a one-line message on a known failure.

    `check`, if given, runs after the output, metrics and manifest are saved: a report-style stage
    (validate) keeps the report that explains a failure, and still fails the stage and its run.
    """
    try:
        _run(stage, inputs, output, work, seed, check)
    except (ConfigError, DataFormatError, TrackingError, *_stage_errors()) as error:
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
    from scratchlm.data.sources import SourceError
    from scratchlm.data.validation import DataValidationError

    errors: list[type[BaseException]] = [SourceError, DataValidationError, ValueError, OSError]
    if "scratchlm.training.module" in sys.modules:
        from scratchlm.training.module import NonFiniteLossError

        errors.append(NonFiniteLossError)
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


def _run(stage: str, inputs: list[str], output: str, work: Work, seed: int,
         check: Callable[[], None] | None) -> None:
    params, tracking = load_params(stage)
    missing = [path for path in inputs if not Path(path).exists()]
    if missing:
        raise DataFormatError(f"input {missing[0]} does not exist (run the stage that produces it first)")
    seed_everything(seed)
    if not is_rank_zero():
        # a worker of a multi-process launch (DDP/FSDP): it trains, rank 0 alone tracks and writes
        with tempfile.TemporaryDirectory() as scratch:
            work(params, Path(scratch), StageRun(None))
        return
    started = utc_now()
    described = {path: describe_input(path) for path in sorted(inputs)}
    commit, dirty = git_state()
    tags = {"git_commit": commit or "unknown", "git_dirty": str(dirty).lower()}
    if exp := dvc_experiment():
        tags["dvc_exp"] = exp
    tags.update({f"upstream.{name}": run_id for name, run_id in upstream_run_ids(described).items()})
    with stage_run(stage, tracking, tags) as run:
        run.log_params(params.model_dump(mode="json"))
        run.log_inputs(described)
        with full_disk_names(output), atomic_output_dir(output) as tmp:
            metrics = work(params, tmp, run)
            write_manifest(tmp, stage=stage, run_id=run.run_id, params=params.model_dump(mode="json"),
                           inputs=described, started=started)
        atomic_write_json(METRICS_DIR / f"{stage}.json", metrics)
        run.log_metrics(flatten_metrics(metrics))
        run.log_artifact(METRICS_DIR / f"{stage}.json", artifact_path="metrics")
        run.log_artifact(Path(output) / "manifest.json")
        if check is not None:
            check()
