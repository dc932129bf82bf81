"""The data half of the debug DAG on a real multi-node Ray cluster on 127.0.0.1, against the local run: the
same hashes, with tasks run on more than one node.

The test starts the nodes itself (`ray start --block`, a head and workers) and stops them by their PIDs
afterwards, so nothing of Ray outlives the test.
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



NODES = 3  # a head and two worker nodes, one CPU each: tasks must spread over nodes to run in parallel


def ray_process(log: Path, *args: str) -> subprocess.Popen:
    """`ray start … --block` in its own process group (stopping it stops the processes it started)."""
    ray_cli = Path(sys.executable).parent / "ray"
    with open(log, "w") as out:
        env = {**os.environ, "RAY_raylet_start_wait_time_s": "120"}  # the default 60 s is tight on 2 busy cores
        return subprocess.Popen([str(ray_cli), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus",
                                 "1", "--disable-usage-stats", *args],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def alive_nodes(address: str) -> int:
    """How many nodes `ray status` lists as active (0 while the cluster does not answer)."""
    ray_cli = Path(sys.executable).parent / "ray"
    status = subprocess.run([str(ray_cli), "status", "--address", address], capture_output=True, text=True)
    if status.returncode:
        return 0
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(" node_" in line for line in active.splitlines())


def wait_for_nodes(address: str, count: int, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 120
    while alive_nodes(address) < count:
        assert all(p.poll() is None for p in processes), f"a `ray start` exited: {[p.args for p in processes]}"
        assert time.monotonic() < deadline, f"{count} Ray nodes did not come up in 120 s"
        time.sleep(1)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray cluster of NODES nodes on 127.0.0.1 (`ray start --head`, then `ray start --address` for each
    further node, with its own raylet and CPU), stopped by the PIDs of the `ray start` processes."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    address = f"127.0.0.1:{port}"
    logs = Path(temp)
    processes = [ray_process(logs / "head.log", "--head", "--port", str(port), "--include-dashboard=false",
                             "--temp-dir", temp)]
    try:
        wait_for_nodes(address, 1, processes)
        for node in range(1, NODES):  # one at a time: two raylets registering at once time out on busy cores
            processes.append(ray_process(logs / f"node{node}.log", "--address", address))
            wait_for_nodes(address, node + 1, processes)
        yield address
    except AssertionError:
        for log in sorted(logs.glob("*.log")):
            print(f"--- {log.name}", log.read_text()[-2000:], sep="\n")
        raise
    finally:
        for process in reversed(processes):
            stop(process)
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
        executor = record["executor"][0]
        assert executor["cluster_cpus"] == NODES and executor["nodes"] == NODES, executor
        assert len(executor["tasks_per_node"]) >= 2, f"{stage}: every task ran on one node: {executor}"
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
