"""Running stages and DVC in a copy of the debug DAG without touching the shared one's MLflow runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fresh_tracking(cwd: Path) -> dict[str, str]:
    """A throwaway MLflow database inside the copy, so no run of the test lands in the shared DAG's."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'reliability.db'}"}


def dvc(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **fresh_tracking(cwd),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
