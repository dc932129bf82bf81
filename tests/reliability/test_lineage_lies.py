"""Lineage that lies: what a careless or hostile user can do to make dvc.lock, the manifests, the run records
and MLflow disagree, and what stops it, through the real DVC, stage scripts and `scratchlm audit` on a copy
of the finished debug DAG.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dag_tools import dvc, fresh_tracking
from stage_cli import error_line, run_stage, set_params, stage_argv

from scratchlm.io import file_hashes, list_files, sha256_file
from scratchlm.lineage.manifest import manifest_sha256

pytestmark = pytest.mark.slow


def audit(dag: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the DAG's own mlflow.db
    result = subprocess.run([sys.executable, "-m", "scratchlm.cli", "audit", *args], cwd=dag, env=env,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def lock_entry(dag: Path, stage: str) -> dict:
    return yaml.safe_load((dag / "dvc.lock").read_text())["stages"][stage]


# ---------------------------------------------------------------------------------- dvc commit -f


def _params(dag: Path) -> tuple[str, str]:
    set_params(dag, {"evaluate": {"max_items": 7}})
    return "evaluate", "✗ lock: param evaluate.max_items: dvc.lock has '7', the output was made with '20'"


def _data_params(dag: Path) -> tuple[str, str]:
    set_params(dag, {"clean": {"min_words": 3}})
    return "clean", "✗ lock: param clean.min_words: dvc.lock has '3', the output was made with '20'"


def _code(dag: Path) -> tuple[str, str]:
    path = dag / "pipelines/tokenize.py"
    path.write_text(path.read_text() + "\n# an edit after the run\n")
    return "tokenize", f"✗ lock: dep pipelines/tokenize.py: dvc.lock has md5 {file_hashes(path)['md5']}, the stage read"


def _output(dag: Path) -> tuple[str, str]:
    path = dag / "models/tokenizer/tokenizer.json"
    path.write_text(path.read_text().replace('"<|pad|>"', '"<|PAD|>"', 1))
    return "tokenizer", "✗ lock: out models/tokenizer: dvc.lock has md5 "


@pytest.mark.parametrize("edit", [_params, _data_params, _code, _output], ids=["params", "data-params", "code", "output"])
def test_dvc_commit_after_an_edit_is_caught_naming_the_stage_and_key(dag: Path, edit: Callable) -> None:
    """`dvc commit -f STAGE` makes dvc.lock describe what is on disk now; the output was made from something
    else. `dvc status` is clean afterwards: the audit must name the disagreement."""
    stage, expected = edit(dag)
    commit = dvc(dag, "commit", "-f", stage)
    assert commit.returncode == 0, commit.stderr
    assert "up to date" in dvc(dag, "status", stage).stdout  # DVC itself sees nothing wrong
    code, out = audit(dag)
    assert code == 1 and expected in out, out
    line = next(line for line in out.splitlines() if expected in line)
    tree_line = next(line for line in out.splitlines() if f"✗ {stage}  " in line)
    assert "✗lock" in tree_line and out.index(tree_line) < out.index(line), out


# ---------------------------------------------------------------------------------- forged outputs


def test_a_forged_output_with_a_rehashed_manifest_is_caught_along_the_chain(dag: Path) -> None:
    """A byte of a clean shard changed and its manifest entry re-hashed: the outputs check passes, but clean's
    manifest digest moved, which dedup's manifest, clean's run record, its MLflow run and dvc.lock still hold."""
    shard = sorted((dag / "data/clean").rglob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    manifest_file = dag / "data/clean/manifest.json"
    manifest = json.loads(manifest_file.read_text())
    rel = shard.relative_to(dag / "data/clean").as_posix()
    manifest["outputs"][rel] = {**file_hashes(shard)}
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    old = json.loads((dag / "reports/runs/clean.json").read_text())["manifest_sha256"]
    new = manifest_sha256(dag / "data/clean")
    code, out = audit(dag)
    assert code == 1, out
    assert f"data/clean/manifest.json has {new[:12]} and no MLflow run recorded it" in out  # the run record
    assert f"data/clean: data/clean/manifest.json is not the one the stage read (sha256 {new[:12]} now, " \
           f"{old[:12]} then)" in out  # dedup's manifest
    assert "✗ lock: out data/clean: dvc.lock has md5" in out and "✗ dvc: dvc.lock: changed outs" in out
    assert "✓outputs" in next(line for line in out.splitlines() if "✗ clean  data/clean" in line)


def test_a_forger_who_also_rewrites_the_record_dvc_lock_and_downstream_is_caught_by_mlflow(dag: Path) -> None:
    """What the README's threat model says audit cannot miss unless MLflow is rewritten too."""
    manifest_file = dag / "data/clean/manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["params"]["min_words"] = 3
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    new = manifest_sha256(dag / "data/clean")
    record = dag / "reports/runs/clean.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "manifest_sha256": new}))
    code, out = audit(dag, "data/clean")
    assert code == 1 and "✗ mlflow: MLflow run " in out and f"the output's is {new[:12]}" in out, out


# ---------------------------------------------------------------------------------- changes under a running stage


def start_pretrain(dag: Path, *cmd: str) -> subprocess.Popen:
    """A command that trains (long enough to overlap), returned once pretrain's temp output exists."""
    env = {**os.environ, **fresh_tracking(dag), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(list(cmd), cwd=dag, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((dag / "models").glob(".pretrain.tmp-*")):
        assert process.poll() is None, f"{cmd} ended early: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, out + err


def outputs(dag: Path) -> dict[str, str]:
    return {p.relative_to(dag).as_posix(): sha256_file(p) for name in ("models/pretrain", "reports/metrics",
                                                                        "reports/plots", "reports/runs")
            for p in list_files(dag / name)}


def test_two_exp_runs_in_one_workspace_the_first_fails_instead_of_recording_the_seconds_params(dag: Path) -> None:
    """The second `dvc exp run -S` is refused by DVC's lock, but rewrites params.yaml first; the first, still
    training, must notice its section changed and fail without swapping its model in."""
    before, lock_before = outputs(dag), lock_entry(dag, "pretrain")
    # pretrain alone (the ladder reads its section too, and would run first)
    first = start_pretrain(dag, "dvc", "exp", "run", "--single-item", "pretrain", "-S", "pretrain.max_steps=400")
    second = dvc(dag, "exp", "run", "-S", "pretrain.lr=0.002")
    assert second.returncode != 0
    code, out = finish(first)
    assert code != 0, out
    assert "error: pretrain: params.yaml: the pretrain section changed while the stage ran" in out, out
    assert "the output was not replaced; run experiments side by side with `dvc exp run --queue`" in out
    assert outputs(dag) == before and lock_entry(dag, "pretrain") == lock_before


def test_an_input_replaced_under_a_running_stage_fails_it(dag: Path) -> None:
    set_params(dag, {"pretrain": {"max_steps": 400}})
    before = outputs(dag)
    first = start_pretrain(dag, sys.executable, "-m", *stage_argv("pretrain", dag))
    header = dag / "data/tokens/train.json"
    header.write_text(header.read_text())  # rewritten in place, same bytes: a new file all the same
    code, out = finish(first)
    assert code == 1 and "error: pretrain: data/tokens/train.json changed while the stage ran" in out, out
    assert outputs(dag) == before


def test_a_record_with_a_duplicate_id_stops_the_fine_tune_naming_both(dag: Path) -> None:
    data = dag / "data/raw/classification/sms_spam/data.jsonl"
    lines = data.read_text().splitlines()
    twin = {**json.loads(lines[5]), "id": json.loads(lines[2])["id"]}
    data.write_text("\n".join([*lines[:5], json.dumps(twin), *lines[6:]]) + "\n")
    line = error_line(run_stage(dag, *stage_argv("finetune_classifier", dag), env=fresh_tracking(dag)))
    assert f"data/raw/classification/sms_spam/data.jsonl: records 3 and 6 share the id {twin['id']!r}" in line, line
