"""Shell helpers of the end-to-end tests: run a command in a repo copy, make that copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def copy_repo(dest: Path) -> Path:
    """The files git would ship (tracked + new, not ignored), committed in a fresh repo."""
    listing = sh(REPO, "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z").stdout
    for rel in filter(None, listing.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    (dest / "dvc.lock").unlink(missing_ok=True)
    for cmd in (["init", "-q"], ["config", "user.email", "ci@example.com"], ["config", "user.name", "ci"]):
        sh(dest, "git", *cmd)
    sh(dest, sys.executable, "-m", "scratchlm.cli", "profile", "use", "debug")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "debug profile")
    return dest
