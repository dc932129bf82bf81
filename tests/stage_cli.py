"""Run a real stage script the way `dvc repro` does, in a folder of the test's making."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_stage(cwd: Path, *args: str, env: dict[str, str] | None = None,
              preexec_fn: Callable[[], None] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m pipelines.<stage> ARGS` with the repository's code and a throwaway MLflow database."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
                **(env or {})}
    full_env.pop("SCRATCHLM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The stage's one-line `error:` message (failing the test if there is a traceback instead)."""
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s keys set recursively (mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_params(cwd: Path, override: dict[str, Any]) -> None:
    """Edit `cwd/params.yaml` (copied from the repository's if absent)."""
    path = cwd / "params.yaml"
    if not path.exists():
        shutil.copy(REPO / "params.yaml", path)
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(merge(params, override), sort_keys=False), encoding="utf-8")


def stage_argv(stage: str, root: Path = REPO) -> list[str]:
    """The stage's dvc.yaml cmd without `python -m`: the arguments `run_stage` takes."""
    import shlex

    cmd = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]["cmd"]
    argv = shlex.split(cmd)
    assert argv[:2] in (["python", "-m"], ["python3", "-m"]), cmd
    return argv[2:]
