"""`scratchlm audit --reproduce STAGE` on the real debug-profile DAG (conftest.py), in copies of the session's repo.

A re-run is compared with the hashes the stage's manifest recorded, so tampering with the live output
files proves nothing here (`scratchlm audit` catches that); tampering with the record does: a changed
recorded hash or a changed recorded param must fail, naming the file.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from repo_shell import sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def copy_of(repo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))


def reproduce(root: Path, stage: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = sh(root, sys.executable, "-m", "scratchlm.cli", "audit", "--reproduce", stage, check=False)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def snapshot(root: Path) -> dict[str, float]:
    """Every file's mtime: the re-run must write nothing into the audited repository (MLflow included)."""
    return {p.relative_to(root).as_posix(): p.lstat().st_mtime for p in root.rglob("*") if ".git" not in p.parts}


@pytest.mark.parametrize(("stage", "folder"), [("clean", "data/clean"), ("validate", "reports/data_validation"),
                                               ("tokenizer", "models/tokenizer"), ("tokenize", "data/tokens"),
                                               ("evaluate", "reports/evaluation"), ("report", "reports/model_card")])
def test_data_stages_reproduce_byte_for_byte(repo: Path, tmp_path: Path, stage: str, folder: str) -> None:
    root = copy_of(repo, tmp_path)
    before = snapshot(root)
    code, out, seconds = reproduce(root, stage)
    assert code == 0, out
    recorded = [*json.loads((root / folder / "manifest.json").read_text())["outputs"], "manifest.json"]
    for rel in recorded:
        assert any(line.split() == ["✓", "identical", f"{folder}/{rel}"] for line in out.splitlines()), out
    assert "✗" not in out and f"reproduced: {stage}, {len(recorded)} of {len(recorded)} files identical" in out
    assert snapshot(root) == before, "the re-run wrote into the audited repository"
    print(f"--reproduce {stage}: {seconds:.1f}s")


def _recorded_hash(root: Path) -> tuple[str, str]:
    path = root / "data/clean/manifest.json"
    manifest = json.loads(path.read_text())
    rel = sorted(manifest["outputs"])[-1]
    digest = manifest["outputs"][rel]["sha256"]
    manifest["outputs"][rel]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    path.write_text(json.dumps(manifest))
    return f"data/clean/{rel}", "sha256 differs from the manifest"


def _recorded_param(root: Path) -> tuple[str, str]:
    path = root / "data/clean/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["params"]["min_words"] = 60  # drops more documents: other shards, other metrics
    path.write_text(json.dumps(manifest))
    return "data/clean/dropped_samples.json", "reports/metrics/clean.json:docs_out"


@pytest.mark.parametrize("tamper", [_recorded_hash, _recorded_param], ids=["recorded-hash", "recorded-param"])
def test_tampered_record_fails_naming_the_file(repo: Path, tmp_path: Path, tamper) -> None:
    root = copy_of(repo, tmp_path)
    name, why = tamper(root)
    code, out, _ = reproduce(root, "clean")
    assert code == 1, out
    assert any(line.split()[:3] == ["✗", "differs", name] for line in out.splitlines()), out
    assert why in out and "NOT reproduced: clean" in out


def test_changed_input_stops_before_the_rerun(repo: Path, tmp_path: Path) -> None:
    root = copy_of(repo, tmp_path)
    shard = sorted((root / "data/raw/pretrain").rglob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes() + b"\0")
    code, out, _ = reproduce(root, "clean")
    assert code == 1, out
    assert "✗ input  data/raw/pretrain: input changed since the stage read it" in out
    assert "a re-run would prove nothing" in out and "✓" not in out
    assert "NOT reproduced: clean, not compared (1 input(s) changed)" in out


def test_download_and_unknown_stages_are_refused(repo: Path) -> None:
    code, out, _ = reproduce(repo, "download")  # refused before anything runs: the session repo is safe
    assert code == 2 and "cannot reproduce download: download fetches its sources from the network" in out
    code, out, _ = reproduce(repo, "no_such_stage")
    assert code == 2 and "unknown stage 'no_such_stage'" in out


def test_pretrain_reproduces_within_tolerance(repo: Path, tmp_path: Path) -> None:
    """fp32, compile off, CPU (the debug profile): even the weights are expected to come out identical;
    what must hold anywhere is the metrics within tolerance, so that is all this asserts."""
    root = copy_of(repo, tmp_path)
    code, out, seconds = reproduce(root, "pretrain")
    assert code == 0, out
    assert "metrics within 2%" in out and "reproduced" in out and "✗" not in out
    assert "models/pretrain/manifest.json" in out  # the manifest is compared like every output file
    print(f"--reproduce pretrain: {seconds:.1f}s\n{out}")
