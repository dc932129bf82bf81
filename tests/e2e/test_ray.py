"""The data half of the debug DAG on a real Ray cluster on 127.0.0.1, against the local run: same hashes.

The test starts the head node itself (`ray start --head --block`) and stops it by its PID afterwards,
so nothing of Ray outlives the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ports import free_port
from repo_shell import sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ray = pytest.importorskip("ray")

DATA_STAGES = ["download", "clean", "dedup", "validate", "tokenizer", "tokenize"]



@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray cluster with 2 CPUs on 127.0.0.1; yields its address."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                             "--disable-usage-stats", "--temp-dir", temp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(ray_cli), "status", "--address", address], capture_output=True).returncode != 0:
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not come up in 120 s"
            time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def outs_and_deps(root: Path) -> dict[str, dict[str, str]]:
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {stage: {item["path"]: item["md5"] for kind in ("deps", "outs") for item in stages[stage].get(kind) or []}
            for stage in DATA_STAGES}


def test_the_data_stages_on_ray_write_the_bytes_the_local_run_wrote(repo: Path, tmp_path: Path,
                                                                     ray_cluster: str) -> None:
    root = Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["executor"] = {"kind": "ray", "ray": {"address": ray_cluster, "num_cpus": 1, "max_in_flight": 4}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = sh(root, "dvc", "repro", "--force", "tokenize")
    assert "Running stage 'clean'" in result.stdout and "Running stage 'tokenize'" in result.stdout
    assert outs_and_deps(root) == outs_and_deps(repo), "another executor, the same bytes"
    for stage in ("clean", "dedup", "tokenize"):
        record = json.loads((root / "reports/runs" / f"{stage}.json").read_text())
        assert [e["kind"] for e in record["executor"]] == ["ray"], record["executor"]
        assert record["executor"][0]["cluster_cpus"] == 2
    audit = sh(root, sys.executable, "-m", "scratchlm.cli", "audit", "data/tokens", check=False)
    assert audit.returncode == 0, audit.stdout[-3000:]


def test_an_unreachable_cluster_is_one_line(repo: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(repo, tmp_path / "r", symlinks=True))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["executor"] = {"kind": "ray", "ray": {"address": f"127.0.0.1:{free_port()}"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (root / "data/clean/manifest.json").read_bytes()
    result = sh(root, "dvc", "repro", "--force", "--single-item", "clean", check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: clean: ")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-3000:]
    assert "Ray cluster at '127.0.0.1:" in errors[0] and "is not reachable" in errors[0], errors[0]
    assert (root / "data/clean/manifest.json").read_bytes() == before
