"""Shared fixtures: small documents in the pipeline's schemas, written where a stage expects them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _pin_worker() -> None:
    """Under pytest-xdist, each worker (and every stage it starts) runs on its own core: a stage sizes torch's
    threads by the CPUs it may use (`scratchlm.launch.usable_cpus`), so two workers no longer run two threads
    each on two cores, where OpenMP's spinning made a 16-s pretrain take six minutes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and 1 < count <= len(cpus):
        os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})


_pin_worker()

REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist (`make test` runs `pytest -n 2 --dist load --maxschedchunk 1`) each worker is a pytest
# session of its own, with its own session fixtures. The debug DAG is the exception: the first worker to need
# it builds it, once for the whole run, and every worker works in a copy of it (`debug_dag`); the test order
# below keeps the other worker on tests that do not need it while it is built. (Grouping tests on one worker with `--dist
# loadgroup` has no effect under pytest 9: xdist 3.8 puts the group on a node id pytest no longer reads.)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first and the short ones last, so the two workers finish together, in an order that has
    one worker build the debug DAG while the other runs long tests that do not need it.

    `make test` runs `--dist load --maxschedchunk 1`: each worker is handed the next test in this order
    when it is nearly out of tests (xdist keeps two queued on each). So: two tests that use the debug DAG
    (the first worker builds it), the long tests that do not use it (`slow`, end-to-end first), the other
    tests that use it (end-to-end first, then the copies tests/reliability breaks), then the rest. Only the
    speed depends on this order: a worker that reaches the DAG while it is being built waits for it.
    """
    def uses_dag(item: pytest.Item) -> bool:
        return "debug_dag" in item.fixturenames  # the fixture closure: `repo` and others that need it

    def e2e_first(item: pytest.Item) -> int:
        return 0 if REPO / "tests" / "e2e" in item.path.parents else 1

    dag = sorted((i for i in items if uses_dag(i)), key=e2e_first)
    slow = sorted((i for i in items if not uses_dag(i) and i.get_closest_marker("slow")), key=e2e_first)
    rest = [i for i in items if not uses_dag(i) and not i.get_closest_marker("slow")]
    items[:] = dag[:2] + slow + dag[2:] + rest


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def debug_dag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The debug-profile DAG run by the real `dvc repro`, once for the whole test run: (live copy, pristine).

    The pristine one is built by the first worker that needs it, under a lock in the folder the workers'
    temp folders share; no test changes its files: the reliability tests copy it before breaking one part.
    Each worker's e2e tests work in a live copy of their own (and change it: experiments, tampering). The
    copies' new MLflow runs put their artifacts in the pristine folder's `mlartifacts/` (MLflow stores an
    experiment's artifact location as an absolute path), beside the pristine runs' own.
    """
    import fcntl
    import shutil

    from repo_shell import copy_repo, sh

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-of-<user>/pytest-N/, above each worker's popen-gwK/
    pristine, done = shared / "debug_dag" / "repo", shared / "debug_dag" / "built"
    with (shared / "debug_dag.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here while the DAG is built
        if not done.exists():
            shutil.rmtree(pristine.parent, ignore_errors=True)  # a build that failed in this run's other worker
            pristine.mkdir(parents=True)
            sh(copy_repo(pristine), "dvc", "repro")
            done.touch()
    live = tmp_path_factory.mktemp("live") / "repo"
    shutil.copytree(pristine, live, symlinks=True)
    return live, pristine
