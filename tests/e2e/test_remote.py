"""Sharing artefacts through the DVC remote: push from one checkout, pull into a fresh clone.

Runs on a copy of the session's debug-profile repo (conftest.py). The remote is set exactly as the
committed default is: `dvc remote add -d local ../scratchlm-dvc-remote` from the repo root, which
DVC stores relative to `.dvc/` (`url = ../../scratchlm-dvc-remote`), i.e. a folder beside the repo.
Every clone placed beside the same folder therefore uses the same remote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from repo_shell import sh

from scratchlm.io import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REMOTE = "scratchlm-dvc-remote"
SHARED = ["models/pretrain", "data/tokens"]


def digests(root: Path, folders: list[str]) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for folder in folders
            for p in sorted((root / folder).rglob("*")) if p.is_file()}


def test_push_then_pull_into_a_fresh_clone_gives_the_same_bytes(repo: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))
    sh(root, "dvc", "remote", "add", "--default", "--force", "local", f"../{REMOTE}")
    config = (root / ".dvc" / "config").read_text()
    assert "remote = local" in config and f"url = ../../{REMOTE}" in config, config
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "pipeline results (dvc.lock) and the default remote")

    sh(root, "dvc", "push")
    assert (tmp_path / REMOTE / "files" / "md5").is_dir(), "the remote is the folder beside the repo"
    assert not (root / REMOTE).exists() and not (root.parent.parent / REMOTE).exists()

    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(root), str(clone))
    assert not (clone / "models").exists() and not (clone / "data").exists()
    assert not (clone / ".dvc" / "cache").exists(), "the clone starts with an empty cache"
    sh(clone, "dvc", "pull")
    expected = digests(root, SHARED)
    assert "models/pretrain/model.safetensors" in expected and "data/tokens/train/part-00000.bin" in expected
    assert digests(clone, SHARED) == expected

    # pointing one checkout elsewhere stays local: .dvc/config.local is git-ignored
    elsewhere = tmp_path / "elsewhere"
    sh(clone, "dvc", "remote", "modify", "--local", "local", "url", str(elsewhere))
    sh(clone, "dvc", "push")
    assert (elsewhere / "files" / "md5").is_dir()
    assert sh(clone, "git", "status", "--porcelain").stdout.strip() == ""
