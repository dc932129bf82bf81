"""The e2e modules share one run of the debug-profile DAG (see `debug_dag` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def repo(debug_dag: tuple[Path, Path]) -> Path:
    return debug_dag[0]
