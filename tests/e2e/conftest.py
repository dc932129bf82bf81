"""The debug-profile DAG, run once per test session in a throw-away copy of the repo, for every e2e module."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_shell import copy_repo, sh


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    sh(root, "dvc", "repro")
    return root


