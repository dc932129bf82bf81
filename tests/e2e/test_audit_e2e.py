"""`scratchlm audit` on the real debug-profile DAG (conftest.py), always in a copy of the session's repo.

Each tampering gets a fresh copy (a few MB): the copy is never the session repo itself, so the other
e2e modules keep seeing an untouched pipeline.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from repo_shell import sh

STAGES = ["download", "clean", "dedup", "validate", "tokenizer", "tokenize", "pretrain", "finetune_classifier",
          "finetune_instruct", "align", "evaluate", "report", *(f"scaling@{rung}" for rung in ("xs", "s", "m", "l", "xs_long", "s_long")),
          "scaling_fit"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def copy_of(repo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))


def run_audit(root: Path, *args: str) -> tuple[int, str]:
    result = sh(root, sys.executable, "-m", "scratchlm.cli", "audit", *args, check=False)
    return result.returncode, result.stdout + result.stderr


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_clean_copy_verifies_the_whole_lineage(repo: Path, tmp_path: Path) -> None:
    root = copy_of(repo, tmp_path)
    code, out = run_audit(root)
    assert code == 0, out
    for stage in STAGES:
        assert f"✓ {stage}  " in out, f"{stage} missing from the tree:\n{out}"
    saved = json.loads((root / "reports/audit.json").read_text())
    assert saved["root"] == "reports/model_card" and saved["failed"] is False and len(saved["nodes"]) == len(STAGES)
    assert all(node["checks"][3] == {"name": "dvc", "status": "ok", "problems": []}
               and node["checks"][2] == {"name": "lock", "status": "ok", "problems": []}
               for node in saved["nodes"].values())
    assert "# Audit of `reports/model_card`" in (root / "reports/audit.md").read_text()
    run_id = json.loads((root / "reports/runs/pretrain.json").read_text())["mlflow_run_id"]
    code, out = run_audit(root, run_id, "--json-out", "reports/audit_run.json")
    assert code == 0 and json.loads((root / "reports/audit_run.json").read_text())["root"] == "models/pretrain"
    assert "report" not in json.loads((root / "reports/audit_run.json").read_text())["nodes"]


def _clean_shard(root: Path) -> str:
    shard = sorted((root / "data/clean").rglob("*.parquet"))[0]
    flip_one_byte(shard)
    return f"{shard.relative_to(root).as_posix()}: changed"


def _tokenizer(root: Path) -> str:
    flip_one_byte(root / "models/tokenizer/tokenizer.json")
    return "models/tokenizer/tokenizer.json: changed"


def _weights(root: Path) -> str:
    flip_one_byte(root / "models/pretrain/model.safetensors")
    return "models/pretrain/model.safetensors: changed"


def _metrics(root: Path) -> str:
    path = root / "reports/metrics/pretrain.json"
    metrics = json.loads(path.read_text())
    metrics["val_loss"] += 0.25
    path.write_text(json.dumps(metrics))
    return "reports/metrics/pretrain.json: val_loss = "


def _deleted_run(root: Path) -> str:
    run_id = json.loads((root / "reports/runs/pretrain.json").read_text())["mlflow_run_id"]
    MlflowClient(f"sqlite:///{root / 'mlflow.db'}").delete_run(run_id)
    return f"MLflow run {run_id} is deleted"


@pytest.mark.parametrize("tamper", [_clean_shard, _tokenizer, _weights, _metrics, _deleted_run],
                         ids=["clean-shard", "tokenizer", "weights", "metrics-json", "deleted-run"])
def test_tampering_fails_naming_the_file_or_run(repo: Path, tmp_path: Path, tamper: Callable[[Path], str]) -> None:
    root = copy_of(repo, tmp_path)
    expected = tamper(root)
    code, out = run_audit(root)
    assert code == 1, out
    assert expected in out, out
    assert "audit FAILED" in out
