"""Wall time, start-up and peak memory of each stage of `dvc repro`, and of a no-op `dvc repro`.

The debug profile is run here from a clean state, in a throwaway `git clone` of this repository's
HEAD (committed code only, as CI sees it), as one `dvc repro`: what a user runs, with its peak RSS (the
largest stage's) from `wait4`. Each stage's seconds and start-up are its run record's; start-up runs from
the process's start (Linux /proc) to the first line of its work function, after params, input digests
and the tracking process's launch (MLflow loads beside the work, `scratchlm.lineage.tracker`); the
work's own imports (Lightning, Great Expectations) count as work. The default profile takes far longer
than a benchmark should, so its per-stage wall times are read from the run records of this repository
(reports/runs/<stage>.json, written by the last `dvc repro` of the default profile).
Targets (issue #29): start-up ≤ 2.5 s for data stages and report, ≤ 4 s for training stages; no-op
`dvc repro` ≤ 3 s; debug DAG ≤ 60 s; default DAG ≤ 20 minutes on two cores.
Writes reports/bench/pipeline.json.   Usage: python bench/pipeline.py [--skip-debug]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import Figure, report

from scratchlm.audit.walk import load_stages
from scratchlm.lineage.runrecord import read_run_record
from scratchlm.stages import TRAINING

ROOT = Path(__file__).resolve().parents[1]


def run_measured(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS MB of the command and everything it waited for); fails loudly on error."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {cwd}: {process.stderr.read().decode()[-1000:]}")
    return seconds, usage.ru_maxrss / 1024


def clean_clone(dest: Path, env: dict[str, str]) -> Path:
    """HEAD of this repository, cloned, on the debug profile: no outputs, no DVC cache, no MLflow runs."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, env=env)
    subprocess.run([sys.executable, "-m", "scratchlm.cli", "profile", "use", "debug"], cwd=dest, check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return dest


def debug_figures() -> list[Figure]:
    """The debug DAG as a user runs it, one `dvc repro` from a clean clone, and each stage's own seconds and
    start-up from its run record (what DVC adds between stages is the whole's time less their sum)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GX_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    figures, total = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        root = clean_clone(Path(tmp) / "repo", env)
        whole, rss = run_measured(["dvc", "repro"], root, env)
        for stage in load_stages(root):
            seconds = (read_run_record(stage, root) or {}).get("seconds")
            if seconds is None:
                raise SystemExit(f"reports/runs/{stage}.json: no run record after `dvc repro`")
            total += seconds
            figures.append(Figure(f"debug: {stage}", seconds, "s", note="run record"))
            figures.append(startup_figure(stage, root))
        noop, _ = run_measured(["dvc", "repro"], root, env)
    return [*figures, Figure("debug: the stages' own seconds, summed", total, "s"),
            Figure("debug: DVC between and around the stages", whole - total, "s"),
            Figure("debug: whole DAG, one `dvc repro`", whole, "s", target=60, higher_is_better=False,
                   note=f"peak RSS of any stage {rss:,.0f} MB"),
            Figure("no-op dvc repro (debug)", noop, "s", target=3, higher_is_better=False)]


def startup_figure(stage: str, root: Path) -> Figure:
    """The stage's start-up from its run record, against its target (training stages load more)."""
    startup = ((read_run_record(stage, root) or {}).get("timing") or {}).get("startup_seconds")
    if startup is None:
        raise SystemExit(f"reports/runs/{stage}.json: no timing.startup_seconds (not Linux?)")
    target = 4.0 if stage.partition("@")[0] in TRAINING else 2.5
    return Figure(f"debug: {stage} start-up", startup, "s", target=target, higher_is_better=False)


def default_figures(root: Path) -> list[Figure]:
    figures, total = [], 0.0
    for stage in load_stages(root):
        record = read_run_record(stage, root)
        if not record or "seconds" not in record:
            return [Figure("default: no recorded run (run `dvc repro` first)", 0, "s")]
        total += record["seconds"]
        figures.append(Figure(f"default (recorded): {stage}", record["seconds"], "s", note=record["started"]))
    return [*figures, Figure("default (recorded): whole DAG", total, "s", target=1200, higher_is_better=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-debug", action="store_true", help="only read the default run's run records")
    parser.add_argument("--out", default="reports/bench/pipeline.json")
    args = parser.parse_args()
    figures = default_figures(ROOT) + ([] if args.skip_debug else debug_figures())
    report("pipeline: stage wall times", figures, args.out)


if __name__ == "__main__":
    main()
