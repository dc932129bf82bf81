"""A fresh copy of the debug DAG's finished outputs per test, to break one part of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def dag(debug_dag: tuple[Path, Path], tmp_path: Path) -> Path:
    """The pristine debug DAG (code, params, data, models, checkpoints, DVC cache) copied for one test."""
    root = tmp_path / "repo"
    shutil.copytree(debug_dag[1], root, symlinks=True)
    return root
