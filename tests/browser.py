"""Browser-test helpers: an `mlflow server` on a given store, and a headless chromium driven by Playwright.

The browser is the system's chromium (Debian's package: `/usr/bin/chromium`), never one Playwright downloads
(`playwright install` needs the internet, which CI does not have). Each launch gets a fresh profile folder,
and the flags keep chromium from reaching out (sync, component updates, background fetches) or needing a GPU
or a sandbox (CI runs as root in a container).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

from scratchlm.team_server import healthy

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """The system's chromium, or a skip: without it there is no browser to test with."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if not found:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    return found



@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, workdir: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """`mlflow server` on the store, on a free port of 127.0.0.1; yields its URL; stopped by its PID (its
    process group: the CLI and the uvicorn it starts) whatever the test did. It runs in `workdir`, so that
    nothing of its own (a default `mlartifacts/`) lands in the repository whose store it serves."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).parent / "mlflow"
    log = workdir / "mlflow-server.log"
    # no job runner beside the server (a second process, unused here); no usage reports (no internet anyway)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(mlflow), "server", "--backend-store-uri", backend_store_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up ({proc.poll()}); {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def api(uri: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call of MLflow's REST API (`experiments/get-by-name?...`, or POST `runs/search` with a body)."""
    url = f"{uri}/api/2.0/mlflow/{endpoint}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url} {body or ''}: {exc.code} {exc.read().decode(errors='replace')}") from exc


def query(**params: str) -> str:
    return urllib.parse.urlencode(params)


@contextlib.contextmanager
def browser_page(profile: Path, width: int = 1600, height: int = 1000,
                 local_storage: dict[str, str] | None = None) -> Iterator[Any]:
    """A page of a headless chromium with a fresh profile in `profile`; closed (and the browser ended) after.

    `local_storage`: entries every page finds already set, as if the user had made those choices before.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    profile.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            if local_storage:
                context.add_init_script(f"Object.entries({json.dumps(local_storage)})"
                                        ".forEach(([key, value]) => window.localStorage.setItem(key, value));")
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


@contextlib.contextmanager
def screenshot_at_exit(page: Any, path: Path) -> Iterator[Path]:
    """A screenshot of the page as the block leaves it, passed or failed (what the page showed at a failure is
    the first thing to look at); its path is printed."""
    try:
        yield path
    finally:
        try:
            page.screenshot(path=str(path))
            print(f"screenshot: {path}")
        except Exception as exc:  # a crashed page: the test's own error matters more
            print(f"no screenshot {path}: {exc}")
