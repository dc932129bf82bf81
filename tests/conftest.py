"""Shared fixtures: small documents in the pipeline's schemas, written where a stage expects them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

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
