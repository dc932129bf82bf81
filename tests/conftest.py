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
# Under pytest-xdist (`make test` runs `pytest -n 2 --dist load`) each worker is a pytest session of its own:
# it makes the session fixtures below (the debug DAG, the team server) once, for the tests it is sent, so the
# two workers build the debug DAG side by side rather than one worker running every test that uses it. (The
# suite used `--dist loadgroup` to send those tests to one worker; under pytest 9 xdist 3.8's group suffix on
# node ids has no effect, so that was already how it ran.)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests first (in their own order), then the rest: they are the long ones (one to three
    minutes each), and `--dist load` hands tests out in this order, so the two workers start on them together
    and finish on short tests instead of one worker running the last long test alone."""
    e2e = REPO / "tests" / "e2e"
    items.sort(key=lambda item: 0 if e2e in item.path.parents else 1)


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def debug_dag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The debug-profile DAG run once per session by the real `dvc repro`: (live copy, pristine copy).

    The e2e tests work in the live copy (and change it: experiments, tampering); the pristine copy,
    taken right after the run, is what the reliability tests copy before breaking one part.
    """
    import shutil

    from repo_shell import copy_repo, sh

    live = copy_repo(tmp_path_factory.mktemp("repo"))
    sh(live, "dvc", "repro")
    pristine = tmp_path_factory.mktemp("pristine") / "repo"
    shutil.copytree(live, pristine, symlinks=True)
    return live, pristine
