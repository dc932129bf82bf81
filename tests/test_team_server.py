"""The team setup for real: PostgreSQL + `mlflow server` with proxied artifacts, started and stopped by
scratchlm.team_server; a client's run lands in PostgreSQL and its artifact in the server's folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

from scratchlm import team_server


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def gone(pid: int) -> bool:
    """No such process (or only its zombie, which no longer runs)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """The server's folder; stopped (by team_server.stop) whatever the test did.

    Under root PostgreSQL runs as `postgres`, which cannot enter pytest's private /tmp/pytest-of-root:
    then a folder in the system's temp folder that every user may enter.
    """
    try:
        team_server.pg_bindir()
    except team_server.TeamServerError as exc:
        pytest.skip(str(exc))
    if os.geteuid() == 0:
        base = Path(tempfile.mkdtemp(prefix="scratchlm-team-"))
        base.chmod(0o755)
    else:
        base = tmp_path
    try:
        yield base / "server"
    finally:
        team_server.stop(base / "server")
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_start_log_read_back_stop(folder: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    pg_port, port = free_port(), free_port()
    info = team_server.start(folder, pg_port=pg_port, mlflow_port=port)
    assert info["uri"] == f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{info['uri']}/health", timeout=5) as response:
        assert response.status == 200
    assert team_server.start(folder, pg_port=pg_port, mlflow_port=port) == info  # running: the same server

    client = MlflowClient(tracking_uri=info["uri"])
    experiment_id = client.create_experiment("team")
    run = client.create_run(experiment_id, run_name="pretrain")
    client.log_param(run.info.run_id, "lr", "0.001")
    note = tmp_path / "note.txt"
    note.write_text("proxied through the server\n")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    # proxied: the client wrote through the server into the server's folder, and reads it back the same way
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = folder / "artifacts" / experiment_id / run.info.run_id / "artifacts" / "note.txt"
    assert stored.read_text() == "proxied through the server\n"
    back = download_artifacts(run_id=run.info.run_id, artifact_path="note.txt", dst_path=str(tmp_path / "back"),
                              tracking_uri=info["uri"])
    assert Path(back).read_text() == "proxied through the server\n"
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.001"}

    # the backend store is PostgreSQL: the run and its param are rows there
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow",
                          passfile=info["pgpass"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT r.name, p.value FROM runs r JOIN params p ON p.run_uuid = r.run_uuid "
                    "WHERE r.run_uuid = %s AND p.key = 'lr'", (run.info.run_id,))
        assert cur.fetchall() == [("pretrain", "0.001")]
    conn.close()

    team_server.stop(folder)
    assert gone(info["postgres_pid"]) and gone(info["mlflow_pid"])
    assert not port_open(port) and not port_open(pg_port)
    assert not (folder / "server.json").exists()
    assert team_server.status(folder) is None


def test_stop_leaves_a_stranger_with_a_recorded_pid_alone(tmp_path: Path) -> None:
    """After a reboot server.json's PIDs may belong to other programs: stop() signals only a process whose
    command line is the server's, and forgets the stale record."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "server.json").write_text(json.dumps({"postgres_pid": stranger.pid, "mlflow_pid": stranger.pid}))
        assert team_server.status(tmp_path) is None
        team_server.stop(tmp_path)
        assert stranger.poll() is None
        assert not (tmp_path / "server.json").exists()
    finally:
        stranger.kill()
        stranger.wait()
