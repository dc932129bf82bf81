"""Wall time and peak memory of each stage of `dvc repro`, and of a no-op `dvc repro`.

The debug profile is run here from a clean state, in a throwaway `git clone` of this repository's
HEAD (committed code only, as CI sees it), each stage as `dvc repro --single-item STAGE` with its
peak RSS from `wait4`. The default profile takes far longer than a benchmark should, so its per-stage
wall times are read from the run records of this repository (reports/runs/<stage>.json, written by the
last `dvc repro` of the default profile). Targets (issue #8): no-op `dvc repro` ≤ 5 s; debug DAG ≤ 2
minutes; default DAG ≤ 20 minutes on two cores.
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
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GX_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    figures, total = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        root = clean_clone(Path(tmp) / "repo", env)
        for stage in load_stages(root):
            seconds, rss = run_measured(["dvc", "repro", "--single-item", stage], root, env)
            total += seconds
            figures.append(Figure(f"debug: {stage}", seconds, "s", note=f"peak RSS {rss:,.0f} MB"))
        noop, _ = run_measured(["dvc", "repro"], root, env)
    return [*figures, Figure("debug: whole DAG", total, "s", target=120, higher_is_better=False),
            Figure("no-op dvc repro (debug)", noop, "s", target=5, higher_is_better=False)]


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
