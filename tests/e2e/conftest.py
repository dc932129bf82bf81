"""The e2e modules share one run of the debug-profile DAG (see `debug_dag` in tests/conftest.py), and one team
tracking server (PostgreSQL + `mlflow server`), started the first time a test asks for it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port


@pytest.fixture(scope="session")
def repo(debug_dag: tuple[Path, Path]) -> Path:
    return debug_dag[0]



@pytest.fixture(scope="session")
def team_server() -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 with a PostgreSQL backend store and proxied artifacts, as
    `make server` starts it; stopped by its PIDs at the end of the session. Yields its URI."""
    from scratchlm.team_server import start, stop

    # not under pytest's tmp folder: as root, PostgreSQL runs as the `postgres` user, who cannot enter it (0700)
    folder = Path(tempfile.mkdtemp(prefix="scratchlm-team-"))
    folder.chmod(0o755)
    try:
        info = start(folder, pg_port=free_port(), mlflow_port=free_port())
        yield info["uri"]
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
