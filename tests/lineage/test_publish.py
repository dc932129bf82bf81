"""`scratchlm publish-check` and the pre-commit hook: run records from a dirty tree are refused before commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from scratchlm.cli import app

REPO = Path(__file__).resolve().parents[2]


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=check, env=env)


def repo_with_records(root: Path) -> str:
    root.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        git(root, *args)
    (root / "code.py").write_text("x = 1\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "code")
    return git(root, "rev-parse", "HEAD").stdout.strip()


def write_record(root: Path, stage: str, commit: str, dirty: bool) -> None:
    path = root / "reports" / "runs" / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": stage, "git_commit": commit, "git_dirty": dirty}))


def test_records_from_a_dirty_tree_or_a_missing_commit_are_refused_naming_them(tmp_path: Path) -> None:
    root = tmp_path / "r"
    commit = repo_with_records(root)
    write_record(root, "clean", commit, dirty=False)
    ok = CliRunner().invoke(app, ["publish-check", "--repo", str(root)])
    assert ok.exit_code == 0 and "1 run record(s) made from committed code" in ok.output
    write_record(root, "pretrain", commit, dirty=True)
    write_record(root, "tokenize", "0" * 40, dirty=False)
    bad = CliRunner().invoke(app, ["publish-check", "--repo", str(root)])
    assert bad.exit_code == 1
    assert f"error: reports/runs/pretrain.json: made on a dirty tree at {commit[:7]}" in bad.output
    assert f"error: reports/runs/tokenize.json: names commit '{'0' * 40}', which this repository does not have" \
        in bad.output
    assert "clean.json" not in bad.output


def test_the_pre_commit_hook_refuses_a_dirty_record_and_lets_a_clean_one_through(tmp_path: Path) -> None:
    root = tmp_path / "r"
    commit = repo_with_records(root)
    (root / ".githooks").mkdir()
    shutil.copy(REPO / ".githooks" / "pre-commit", root / ".githooks" / "pre-commit")
    git(root, "config", "core.hooksPath", ".githooks")  # what `make hooks` does
    write_record(root, "pretrain", commit, dirty=True)
    git(root, "add", "reports")
    refused = git(root, "commit", "-qm", "outputs", check=False)
    assert refused.returncode != 0 and "reports/runs/pretrain.json: made on a dirty tree" in refused.stderr
    assert git(root, "rev-parse", "HEAD").stdout.strip() == commit  # nothing was committed
    write_record(root, "pretrain", commit, dirty=False)
    git(root, "add", "reports")
    git(root, "commit", "-qm", "outputs")
    assert git(root, "rev-parse", "HEAD").stdout.strip() != commit
