"""Same bytes, same hash: an identical re-run leaves dvc.lock as it was and DVC skips what follows, and another
clone (another commit, other worker counts) records the same hashes for the data and tokenizer stages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from repo_shell import copy_repo, sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DATA_STAGES = ["download", "clean", "dedup", "validate", "tokenizer", "tokenize"]


def lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def hashes(entry: dict, kind: str) -> dict[str, str]:
    return {item["path"]: item["md5"] for item in entry.get(kind) or []}


def test_a_forced_identical_rerun_keeps_dvc_lock_and_skips_everything_after(repo: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))
    before = (root / "dvc.lock").read_text()
    records = {s: (root / "reports/runs" / f"{s}.json").read_text() for s in ("download", "clean", "dedup")}
    out = sh(root, "dvc", "repro", "--force", "clean").stdout
    assert "Running stage 'clean'" in out
    assert (root / "dvc.lock").read_text() == before, "clean's hash (and every other) is unchanged"
    again = sh(root, "dvc", "repro").stdout
    assert "Running stage" not in again and "Stage 'dedup' didn't change, skipping" in again, again
    assert (root / "reports/runs/clean.json").read_text() != records["clean"], "the run itself is recorded"
    assert (root / "reports/runs/dedup.json").read_text() == records["dedup"]
    result = sh(root, "scratchlm", "audit", check=False)
    assert result.returncode == 0, result.stdout[-3000:]


def test_another_clone_on_another_commit_with_other_worker_counts_records_the_same_hashes(repo: Path,
                                                                                         tmp_path: Path) -> None:
    other = copy_repo(tmp_path)
    (other / "README.md").write_text((other / "README.md").read_text() + "\nAn unrelated change.\n")
    params = yaml.safe_load((other / "params.yaml").read_text())
    params["clean"]["num_proc"], params["dedup"]["num_proc"] = 2, 2
    params["tokenize"]["num_threads"], params["tokenize"]["batch_docs"] = 1, 7
    (other / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(other, "git", "commit", "-qam", "other worker counts, an unrelated edit")
    assert sh(other, "git", "rev-parse", "HEAD").stdout != sh(repo, "git", "rev-parse", "HEAD").stdout
    sh(other, "dvc", "repro", "tokenize")
    ours, theirs = lock(repo), lock(other)
    for stage in DATA_STAGES:
        assert hashes(theirs[stage], "outs") == hashes(ours[stage], "outs"), stage
        assert hashes(theirs[stage], "deps") == hashes(ours[stage], "deps"), stage
    changed = {stage for stage in DATA_STAGES if theirs[stage]["params"] != ours[stage]["params"]}
    assert changed == {"clean", "dedup", "tokenize"}, "only the worker counts differ, and they change no hash"
