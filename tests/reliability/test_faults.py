"""Faults: a full disk, an unreachable MLflow, two `dvc repro` at once (kills: test_nothing_lost.py).

The lock test works on a copy of the finished debug DAG; the disk and MLflow tests run the download
stage on a small local source.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dag_tools import dvc, fresh_tracking
from ports import free_port as closed_port
from stage_cli import error_line, run_stage, set_params

from scratchlm.io import tree_sha256


def incompressible_text(path: Path, size: int) -> None:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(50_000)]
    path.write_text(" ".join(rng.choice(words) for _ in range(size // 6)))


def local_source(cwd: Path, glob: str) -> None:
    set_params(cwd, {"download": {"sources": None}})
    set_params(cwd, {"download": {"sources": {"local": {"kind": "local", "format": "text", "role": "pretrain",
                                                        "members": {"train": glob}}}}})


def test_disk_full_while_writing_is_one_line_and_keeps_the_previous_output(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the output's writes fail like a full disk (EFBIG, not ENOSPC)."""
    (tmp_path / "small.txt").write_text("a few words of text that fit anywhere " * 20)
    local_source(tmp_path, "small.txt")
    assert run_stage(tmp_path, "pipelines.download", "data/raw").returncode == 0
    before = tree_sha256(tmp_path / "data" / "raw")
    incompressible_text(tmp_path / "big.txt", 8_000_000)
    local_source(tmp_path, "*.txt")
    limit = (tmp_path / "mlflow.db").stat().st_size + 2_000_000  # MLflow's database may grow; the shard may not
    result = run_stage(tmp_path, "pipelines.download", "data/raw",
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    line = error_line(result)
    assert line.startswith("error: download: [Errno 27] data/raw: could not be written ("), line
    assert "File too large" in line and "the previous output is kept" in line
    assert tree_sha256(tmp_path / "data" / "raw") == before
    assert not list((tmp_path / "data").glob(".raw.*"))



@pytest.mark.parametrize("required", [True, False])
def test_unreachable_mlflow_fails_fast_naming_the_uri_or_goes_on_locally(tmp_path: Path, required: bool) -> None:
    (tmp_path / "small.txt").write_text("a few words of text " * 20)
    local_source(tmp_path, "small.txt")
    set_params(tmp_path, {"tracking": {"required": required, "connect_timeout_s": 2}})
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = run_stage(tmp_path, "pipelines.download", "data/raw", env={"MLFLOW_TRACKING_URI": uri}, timeout=120)
    if required:
        line = error_line(result)
        assert f"MLflow tracking server {uri} is unreachable" in line, line
        assert not (tmp_path / "data" / "raw").exists()
    else:
        assert result.returncode == 0, result.stderr[-2000:]
        assert "tracking disabled for stage 'download'" in result.stderr
        assert (tmp_path / "reports" / "metrics" / "download.json").is_file()
    assert time.monotonic() - started < 120  # never hangs (the subprocess timeout would also fail the test)


@pytest.mark.slow
def test_second_dvc_repro_in_the_same_repo_is_refused_by_dvcs_lock(dag: Path) -> None:
    set_params(dag, {"pretrain": {"max_steps": 5000, "warmup_steps": 10}})  # long enough to overlap
    env = {**os.environ, **fresh_tracking(dag), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(["dvc", "repro", "--single-item", "pretrain"], cwd=dag, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((dag / "models").glob(".pretrain.tmp-*")) and time.monotonic() < deadline:
            assert first.poll() is None, "the first dvc repro ended early"
            time.sleep(0.05)
        second = dvc(dag, "repro")
        assert second.returncode != 0  # DVC 3 locks paths (.dvc/tmp/rwlock), not the whole repo
        assert "is busy, it is being blocked by" in second.stderr, second.stderr[-2000:]
        assert f"(PID {first.pid})" in second.stderr and "repro --single-item pretrain" in second.stderr
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
