"""Fixtures of the lineage tests."""

from pathlib import Path

import pytest


@pytest.fixture
def local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh local MLflow store in the test's folder, named by MLFLOW_TRACKING_URI (which wins over params)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
