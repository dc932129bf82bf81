import json
import subprocess
from pathlib import Path

import pytest

from scratchlm.lineage import describe_input, git_state, read_manifest, upstream_run_ids, write_manifest


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("a\n")
    subprocess.run(["git", "add", "."], check=True)
    subprocess.run(["git", "commit", "-qm", "init"], check=True)
    return tmp_path


def test_git_state_ignores_dvc_lock_but_not_code(git_repo: Path) -> None:
    commit, dirty = git_state()
    assert len(commit) == 40 and not dirty
    (git_repo / "dvc.lock").write_text("b\n")
    assert git_state() == (commit, False)
    (git_repo / "code.py").write_text("x = 2\n")
    assert git_state() == (commit, True)


def test_manifest_chain_records_producer_run_ids(git_repo: Path) -> None:
    raw = git_repo / "data" / "raw"
    (raw / "src").mkdir(parents=True)
    (raw / "src" / "a.txt").write_text("A")
    write_manifest(raw, stage="download", run_id="run-1", params={"p": 1}, inputs={}, started="t0")
    inputs = {"data/raw": describe_input("data/raw")}
    assert inputs["data/raw"]["producer_run_id"] == "run-1"
    assert upstream_run_ids(inputs) == {"download": "run-1"}
    before = inputs["data/raw"]["sha256"]
    write_manifest(raw, stage="download", run_id="run-2", params={"p": 1}, inputs={}, started="t1")
    assert describe_input("data/raw")["sha256"] == before, "the digest covers data, not the manifest"
    manifest = read_manifest(raw / "src" / "a.txt")
    assert manifest["stage"] == "download" and set(manifest["outputs"]) == {"src/a.txt"}
    assert json.loads((raw / "manifest.json").read_text())["versions"]["scratchlm"]
