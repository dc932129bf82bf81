"""The team setup: an MLflow tracking server on a PostgreSQL backend store, with proxied artifacts.

`python -m scratchlm.team_server start` (or `make server`) brings up, inside one folder:

- a PostgreSQL cluster of its own (`<folder>/pgdata`, made once by `initdb`), listening on 127.0.0.1 only,
  its unix socket in `<folder>/socket` (not /var/run/postgresql, which belongs to the system's cluster),
  with password authentication: the password lives in `<folder>/pgpass` (mode 0600), handed to libpq as
  PGPASSFILE so that it never appears in a command line or in `server.json`;
- `mlflow server` on that database (`mlflow`), serving artifacts itself (`--serve-artifacts`) from
  `<folder>/artifacts`, so clients need no access to the artifact store, only to the server's URL.

The PIDs go to `<folder>/server.json`; `stop` ends exactly those processes (never by name: another
PostgreSQL or MLflow on the machine is not ours to stop). Logs: `<folder>/postgres.log`, `<folder>/mlflow.log`.

PostgreSQL refuses to run as root, so under root the cluster runs as the `postgres` system user (Debian's
package creates it); that user must be able to enter the folder, which a folder under a private home
(`/root`, pytest's `/tmp/pytest-of-root`) does not allow: `start` says so in one line instead of letting
`initdb` fail with a permission error.

Only the standard library here: MLflow is run as a program (the `mlflow` next to this interpreter).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_FOLDER = Path(".mlflow-server")
DB_NAME = "mlflow"
DB_USER = "mlflow"
STATE_FILE = "server.json"
PG_READY_TIMEOUT_S = 60.0
MLFLOW_READY_TIMEOUT_S = 180.0  # the first start creates MLflow's tables (alembic migrations): ~30 s on 2 cores
STOP_TIMEOUT_S = 30.0
PG_PROGRAMS = ("initdb", "postgres", "pg_isready", "psql", "createdb")


class TeamServerError(RuntimeError):
    """The server could not be started or stopped; the message names the log file to read."""


# --- finding PostgreSQL ---------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())


def pg_bindir() -> Path:
    """The folder of `initdb` and `postgres`: Debian keeps them in /usr/lib/postgresql/<ver>/bin, off PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(Path(out.strip()))
    # the newest installed server first (pg_config may come from another version's client package)
    candidates[:0] = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in PG_PROGRAMS):
            return folder
    raise TeamServerError(
        f"PostgreSQL's programs ({', '.join(PG_PROGRAMS)}) were not found together in /usr/lib/postgresql/*/bin, "
        "`pg_config --bindir` or PATH; install them (Debian: apt-get install postgresql)"
    )


# --- processes ------------------------------------------------------------------------------------------------


def _run_as() -> dict[str, Any]:
    """Popen arguments that run a PostgreSQL program as the `postgres` user under root, else as ourselves.

    Popen's own user switch (not `runuser`) so that the PID we keep is the postmaster's, not a wrapper's.
    """
    if os.geteuid() != 0:
        return {}
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise TeamServerError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as "
            "(Debian's postgresql package creates it); run as another user or install postgresql"
        ) from exc
    return {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": pg.pw_dir}}


def _give_to_postgres(path: Path) -> None:
    """Under root, hand a folder or file the cluster writes to the `postgres` user."""
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(path, pg.pw_uid, pg.pw_gid)


def _check_reachable(folder: Path) -> None:
    """Under root: the `postgres` user must be able to enter every folder down to ours (ours it may enter
    whatever the umask made of it; a parent that does not let it is the user's to choose)."""
    if os.geteuid() != 0:
        return
    folder.chmod(folder.stat().st_mode | 0o011)
    probe = subprocess.run(["test", "-x", str(folder)], **_run_as(), capture_output=True)
    if probe.returncode == 0:
        return
    blocked = next((p for p in reversed([folder, *folder.parents]) if not p.stat().st_mode & 0o001), folder)
    raise TeamServerError(
        f"the `postgres` user (PostgreSQL refuses to run as root) cannot enter {folder}: {blocked} is private "
        f"(mode {oct(blocked.stat().st_mode & 0o777)}); use a folder under one every user can enter"
    )


def _reap(pid: int) -> None:
    """Collect a child of ours that has exited, so that it no longer counts as alive (a zombie answers kill 0)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int | None, word: str) -> bool:
    """Whether `pid` still runs and is the program we started (`word` in its command line, where /proc tells):
    after a reboot the PID in server.json may belong to some other process, which is not ours to signal."""
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's (a postmaster started by root as `postgres`, seen by a non-root status)
    if Path("/proc").is_dir():
        return word in _cmdline(pid)  # a zombie's is empty
    return True


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(0.2)
    return not check()


def _signal(send: Any, pid: int, sig: signal.Signals, what: str) -> None:
    try:
        send(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise TeamServerError(f"not allowed to stop {what} (pid {pid}): run as the user who started it") from exc


def _stop_postgres(pid: int | None) -> None:
    """Fast shutdown (SIGINT: open sessions are ended, the data is written cleanly), then immediate, then KILL."""
    if not _alive(pid, "postgres"):
        return
    assert pid is not None
    for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        _signal(os.kill, pid, sig, "postgres")
        if _wait_gone(lambda: _alive(pid, "postgres"), wait_s):
            return
    raise TeamServerError(f"postgres (pid {pid}) did not stop")


def _stop_mlflow(pid: int | None) -> None:
    """SIGTERM to `mlflow server`, which hands it on to its uvicorn; then KILL to the whole process group
    (started as a session of its own, so the group is exactly the server's processes)."""
    if not _alive(pid, "mlflow"):
        return
    assert pid is not None
    _signal(os.kill, pid, signal.SIGTERM, "mlflow server")
    if _wait_gone(lambda: _group_alive(pid), STOP_TIMEOUT_S):
        return
    _signal(os.killpg, pid, signal.SIGKILL, "mlflow server")
    if not _wait_gone(lambda: _group_alive(pid), 5.0):
        raise TeamServerError(f"mlflow server (pid {pid}) did not stop")


# --- readiness ------------------------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    """Nobody listens there. SO_REUSEADDR as the servers set it: the TIME_WAIT connections a server that just
    stopped leaves behind do not keep it from binding again, so they must not make the port look taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def healthy(uri: str) -> bool:
    """Whether the MLflow server at `uri` answers its /health endpoint within 2 s."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(proc: subprocess.Popen[bytes], ready: Any, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise TeamServerError(f"{what} exited ({proc.returncode}) while starting; see {log}:\n{_tail(log)}")
        time.sleep(0.3)
    raise TeamServerError(f"{what} did not become ready within {timeout_s:.0f} s; see {log}:\n{_tail(log)}")


# --- the cluster ----------------------------------------------------------------------------------------------


def _pg_env(folder: Path) -> dict[str, str]:
    """libpq's environment for our clients (createdb, psql, the MLflow server): the password from the file."""
    return {**os.environ, "PGPASSFILE": str(folder / "pgpass"), "PGCONNECT_TIMEOUT": "5"}


def _init_cluster(folder: Path, bindir: Path) -> None:
    """`initdb` once: superuser `mlflow`, password authentication, UTF-8 without a locale (none is needed)."""
    pgdata = folder / "pgdata"
    if (pgdata / "PG_VERSION").is_file():
        return
    password = secrets.token_urlsafe(24)
    pgpass = folder / "pgpass"
    fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"127.0.0.1:*:*:{DB_USER}:{password}\n")
    pgdata.mkdir(mode=0o700, exist_ok=True)
    _give_to_postgres(pgdata)
    pwfile = pgdata.parent / ".initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    _give_to_postgres(pwfile)
    try:
        cmd = [str(bindir / "initdb"), "-D", str(pgdata), "-U", DB_USER, f"--pwfile={pwfile}",
               "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"]
        with open(folder / "postgres.log", "ab") as log:
            result = subprocess.run(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, **_run_as())
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise TeamServerError(f"initdb failed ({result.returncode}); see {folder / 'postgres.log'}")


def _start_postgres(folder: Path, bindir: Path, port: int) -> subprocess.Popen[bytes]:
    socket_dir = folder / "socket"
    socket_dir.mkdir(exist_ok=True)
    _give_to_postgres(socket_dir)
    cmd = [str(bindir / "postgres"), "-D", str(folder / "pgdata"), "-p", str(port),
           "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}"]
    log = folder / "postgres.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **_run_as())
    isready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]

    def ready() -> bool:
        return subprocess.run(isready, capture_output=True).returncode == 0

    try:
        _wait_ready(proc, ready, "postgres", log, PG_READY_TIMEOUT_S)
    except TeamServerError:
        _stop_postgres(proc.pid)
        raise
    return proc


def _create_database(folder: Path, bindir: Path, port: int) -> None:
    """The `mlflow` database, once (a later start finds it)."""
    conn = ["-h", "127.0.0.1", "-p", str(port), "-U", DB_USER]
    env = _pg_env(folder)
    sql = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
    query = [str(bindir / "psql"), *conn, "-d", "postgres", "-tAc", sql]
    found = subprocess.run(query, env=env, capture_output=True, text=True)
    if found.returncode != 0:
        raise TeamServerError(f"cannot query PostgreSQL on 127.0.0.1:{port}: {found.stderr.strip()}")
    if found.stdout.strip() == "1":
        return
    made = subprocess.run([str(bindir / "createdb"), *conn, DB_NAME], env=env, capture_output=True, text=True)
    if made.returncode != 0:
        raise TeamServerError(f"createdb {DB_NAME} failed: {made.stderr.strip()}")


# --- the MLflow server ----------------------------------------------------------------------------------------


def _mlflow_exe() -> str:
    beside = Path(sys.executable).parent / "mlflow"
    if beside.is_file():
        return str(beside)
    if found := shutil.which("mlflow"):
        return found
    raise TeamServerError(f"no `mlflow` program beside {sys.executable} or on PATH (pip install mlflow)")


def _start_mlflow(folder: Path, backend_uri: str, port: int) -> subprocess.Popen[bytes]:
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    cmd = [_mlflow_exe(), "server", "--backend-store-uri", backend_uri,
           "--serve-artifacts", "--artifacts-destination", str(artifacts),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = _pg_env(folder)
    # The job runner (a huey consumer beside the server, for GenAI evaluation jobs) is not used by the
    # pipeline: off unless asked for, to keep the server to one process on a small machine.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log = folder / "mlflow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, lambda: healthy(uri), "mlflow server", log, MLFLOW_READY_TIMEOUT_S)
    except TeamServerError:
        _stop_mlflow(proc.pid)
        raise
    return proc


# --- state ----------------------------------------------------------------------------------------------------


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_state(folder: Path, info: dict[str, Any]) -> None:
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)


def status(folder: Path = DEFAULT_FOLDER) -> dict[str, Any] | None:
    """The running server's info (server.json), or None when either of its processes is gone."""
    info = _read_state(Path(folder).resolve())
    if info and _alive(info.get("postgres_pid"), "postgres") and _alive(info.get("mlflow_pid"), "mlflow"):
        return info
    return None


def start(folder: Path = DEFAULT_FOLDER, pg_port: int = 5433, mlflow_port: int = 5000) -> dict[str, Any]:
    """Start PostgreSQL and the MLflow server in `folder` (both, or neither); if they already run, their info.

    Returns server.json's content: `uri` (what MLFLOW_TRACKING_URI should be), the PIDs, the ports, the
    backend store URI (no password in it: libpq reads it from `pgpass`) and the log files.
    """
    folder = Path(folder).resolve()
    if running := status(folder):
        return running
    stop(folder)  # one of the two survived a crash: start both afresh from a known state
    folder.mkdir(parents=True, exist_ok=True)
    for port, what in ((pg_port, "PostgreSQL"), (mlflow_port, "MLflow")):
        if not _port_free(port):
            raise TeamServerError(f"port {port} on 127.0.0.1 (for {what}) is in use; choose another")
    if pg_port == mlflow_port:
        raise TeamServerError(f"PostgreSQL and MLflow cannot share port {pg_port}")
    _check_reachable(folder)
    bindir = pg_bindir()
    _init_cluster(folder, bindir)
    postgres = _start_postgres(folder, bindir, pg_port)
    try:
        _create_database(folder, bindir, pg_port)
        backend_uri = f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{pg_port}/{DB_NAME}"
        mlflow = _start_mlflow(folder, backend_uri, mlflow_port)
    except BaseException:
        _stop_postgres(postgres.pid)
        raise
    info = {
        "uri": f"http://127.0.0.1:{mlflow_port}",
        "postgres_pid": postgres.pid,
        "mlflow_pid": mlflow.pid,
        "pg_port": pg_port,
        "mlflow_port": mlflow_port,
        "backend_store_uri": backend_uri,
        "pgpass": str(folder / "pgpass"),
        "artifacts": str(folder / "artifacts"),
        "postgres_log": str(folder / "postgres.log"),
        "mlflow_log": str(folder / "mlflow.log"),
    }
    _write_state(folder, info)
    return info


def stop(folder: Path = DEFAULT_FOLDER) -> None:
    """Stop the MLflow server, then PostgreSQL, by the PIDs in server.json; remove server.json."""
    folder = Path(folder).resolve()
    info = _read_state(folder)
    if info is None:
        return
    _stop_mlflow(info.get("mlflow_pid"))
    _stop_postgres(info.get("postgres_pid"))
    (folder / STATE_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchlm.team_server", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="where the cluster, artifacts, logs live")
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port on 127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="the MLflow server's port on 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stop(args.folder)
            print(f"stopped the MLflow server and PostgreSQL of {args.folder}")
            return 0
        info = start(args.folder, args.pg_port, args.port) if args.command == "start" else status(args.folder)
    except TeamServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if info is None:
        print(f"not running ({args.folder})")
        return 1
    print(f"MLflow tracking server {info['uri']} (PostgreSQL on 127.0.0.1:{info['pg_port']}, "
          f"artifacts in {info['artifacts']}; logs: {info['mlflow_log']}, {info['postgres_log']})")
    print(f"export MLFLOW_TRACKING_URI={info['uri']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
