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
#: Fixtures made once per session and shared: the tests that use them run on one pytest-xdist worker.
SHARED_FIXTURES = {"debug_dag", "repo", "dag", "team_server"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `pytest -n 2 --dist loadgroup`), the tests of the debug DAG and of the
    team server form one group on one worker, so each session fixture is made once (a worker has its own
    session); every other test goes to whichever worker is free."""
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("shared-dag"))


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
