"""Commit what you can audit: run records made on a dirty tree, or at a commit nobody has, are refused before
they are committed.

A run record names the commit whose code made the output. A run on a tree with uncommitted code changes
records a commit that is not the code that ran, so nobody who checks that commit out can re-make or trust the
output: `scratchlm publish-check` (and the pre-commit hook `make hooks` installs) refuses such records, one
line each, naming the record and what to do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from scratchlm.lineage.runrecord import RUNS_DIR


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)


def staged_records(root: Path) -> dict[str, str]:
    """The run records staged for the next commit (added or modified), as staged: {path: text}."""
    names = _git(root, "diff", "--cached", "--name-only", "--diff-filter=AM", "--", RUNS_DIR.as_posix()).stdout
    return {name: _git(root, "show", f":{name}").stdout for name in names.split() if name.endswith(".json")}


def workspace_records(root: Path) -> dict[str, str]:
    """Every run record in the workspace: {path: text}."""
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8", errors="replace")
            for path in sorted((root / RUNS_DIR).glob("*.json"))}


def record_problems(records: dict[str, str], root: Path) -> list[str]:
    """One line per record that must not be published: corrupt, made on a dirty tree, or at a missing commit."""
    problems = []
    for name, text in sorted(records.items()):
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            problems.append(f"{name}: corrupt run record (not JSON)")
            continue
        commit = record.get("git_commit") if isinstance(record, dict) else None
        if not isinstance(record, dict):
            problems.append(f"{name}: corrupt run record (not an object)")
        elif record.get("git_dirty") is not False:
            problems.append(f"{name}: made on a dirty tree at {str(commit)[:7]} (uncommitted code changes): commit "
                            "the code, re-run the stage (dvc repro), then commit its outputs")
        elif not commit or _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            problems.append(f"{name}: names commit {commit!r}, which this repository does not have")
    return problems
