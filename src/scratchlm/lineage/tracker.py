"""The stage's MLflow run, kept by a tracking process beside the stage so the work starts at once.

Importing MLflow and opening its store take 2–3 s, longer than many stages' work. So `stage_run` starts a
second process (`python -m scratchlm.lineage.tracker`) that imports MLflow, opens the store and the
run, and logs what the stage sends it, while the stage itself goes straight to its work on the other core.
`StageRun` is the stage's handle: logging calls are sent as JSON lines and do not wait; `end` (before
the stage swaps its output in), `register_model`, and reading `run_id` or `store` wait for the process to
catch up and raise what it met on the way.

What a failure does is unchanged: with `tracking.required` (the default), any failure to log ends the
stage with a one-line TrackingError before its output is swapped in (a run that could not open fails
the stage at its next logging call); with `required: false` it is a warning and the stage goes on
untracked. An HTTP server that does not answer is still found before any work starts: `check_backend`
asks it first, here. A stage that dies without ending its run (killed, crashed) closes the pipe, and
the tracking process marks the run FAILED instead of leaving it "running".

MLflow itself is only called from `scratchlm.lineage.tracking` (the process's side); this module is the
plumbing and imports no MLflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from scratchlm.config.runtime import TrackingParams
from scratchlm.lineage.tracking import TrackingError, check_backend, limit_http_waits, sqlite_file, tracking_uri

#: How long `close` waits for the tracking process to exit after the run has ended (then it is killed by PID).
EXIT_TIMEOUT_S = 60


class _Process:
    """The tracking process and its two pipes: commands to its stdin, replies from a pipe of their own (its
    stdout stays the stage's, where MLflow prints)."""

    def __init__(self, uri: str, tracking: TrackingParams) -> None:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-m", "scratchlm.lineage.tracker", "--reply-fd", str(write_fd), "--uri", uri,
                "--experiment", tracking.experiment, "--required", str(tracking.required).lower(),
                "--timeout", str(tracking.connect_timeout_s)]
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(write_fd,), text=True)
        os.close(write_fd)
        self.replies: IO[str] = os.fdopen(read_fd, encoding="utf-8")
        self.expected: deque[str] = deque()

    def send(self, op: str, *args: Any, reply: bool = False, **kwargs: Any) -> None:
        assert self.popen.stdin is not None
        message = {"op": op, "args": args, "kwargs": kwargs, "reply": reply}
        try:
            self.popen.stdin.write(json.dumps(message) + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            raise TrackingError(f"the tracking process (pid {self.popen.pid}) is gone; see its error above") from None
        if reply:
            self.expected.append(op)

    def ready(self) -> bool:
        """Whether a reply can be read without waiting."""
        return bool(select.select([self.replies], [], [], 0)[0])

    def receive(self) -> tuple[str, dict[str, Any]]:
        """The next reply, in the order the ops were sent (waits)."""
        line = self.replies.readline()
        op = self.expected.popleft()
        if not line:
            raise TrackingError(f"the tracking process (pid {self.popen.pid}) exited before answering {op}; "
                                "see its error above")
        return op, json.loads(line)

    def close(self) -> None:
        """Tell the process to exit, wait for it, and stop it by its PID if it does not."""
        with contextlib.suppress(TrackingError):
            self.send("close")
        with contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.replies.close()


class StageRun:
    """A handle on the stage's MLflow run; a disabled one (no process, or tracking turned off by a failure
    with `required: false`) accepts and drops everything."""

    def __init__(self, process: _Process | None = None, required: bool = True) -> None:
        self._process = process
        self.required = required
        self._run_id: str | None = None
        self._store: dict[str, str] | None = None
        self._opened = process is None
        self.ended = False

    # ------------------------------------------------------------------ what the stage reads (waits)

    @property
    def run_id(self) -> str | None:
        self._wait_opened()
        return self._run_id

    @property
    def store(self) -> dict[str, str] | None:
        """The store that holds the run (`tracking.describe_store`), what the run record names."""
        self._wait_opened()
        return self._store

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    # ------------------------------------------------------------------ logging (does not wait)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._send("log_params", dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send("set_tags", dict(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._send("log_metrics", {key: float(value) for key, value in metrics.items()}, step=step)

    def log_metrics_at(self, metrics: Mapping[str, float], step: int) -> None:
        """`log_fn(metrics, step)`, the shape training callbacks call."""
        self.log_metrics(metrics, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file is logged by the process before `end` returns: it must stay as it is until then (the stage's
        staged outputs do: they are swapped in after `end`). A folder is logged before this returns: the
        runner goes on writing into the staged output (its manifest, through a temporary file), and the
        process must not copy a folder that is still changing."""
        folder = Path(path).is_dir()
        if self._send("log_artifact", str(Path(path).resolve()), artifact_path=artifact_path, reply=folder) and folder:
            self._wait("log_artifact")

    def log_dict(self, obj: Any, name: str) -> None:
        self._send("log_dict", obj, name)

    def log_inputs(self, inputs: Mapping[str, Mapping[str, Any]]) -> None:
        """Each input as an MLflow dataset named by its path, with its digest."""
        self._send("log_inputs", {path: dict(described) for path, described in inputs.items()})

    def adopt(self, run_ids: list[str | None]) -> None:
        """Nest these runs under this one (MLflow's parent tag), side by side in the UI's compare view."""
        self._send("adopt", list(run_ids))

    # ------------------------------------------------------------------ what waits for the process

    def register_model(self, name: str, model_dir: Path, card: Path, tags: Mapping[str, str]) -> str | None:
        """Log a model folder with its card and register it as a new version of `name`; returns the version."""
        if not self._send("register_model", name, str(Path(model_dir).resolve()), str(Path(card).resolve()),
                          dict(tags), reply=True):
            return None
        return self._wait("register_model")

    def end(self, status: str = "FINISHED") -> None:
        """End the run now, once everything sent has been logged; a failure on the way raises here (before
        the stage swaps its output in)."""
        if not self.ended and self._send("end", status=status, reply=True):
            self._wait("end")
        self.ended = True

    def mark_failed(self) -> None:
        """Best effort, on the way out of a failing stage: never hides the error that got us here."""
        with contextlib.suppress(TrackingError):
            if self._send("mark_failed", ended=self.ended, reply=True):
                self._wait("mark_failed")
        self.ended = True

    # ------------------------------------------------------------------ plumbing

    def _store_ready(self) -> None:
        """Wait until the process has opened the store (made its tables, for a new one)."""
        if self._send("opened", reply=True):
            self._wait("opened")

    def _send(self, op: str, *args: Any, reply: bool = False, **kwargs: Any) -> bool:
        """Send one op if the run is live; False when tracking is off (nothing sent)."""
        if self._process is None:
            return False
        if not self._opened and self._process.ready():
            self._wait_opened()  # the run's opening has been answered: act on a failure now, not at the end
            if self._process is None:
                return False
        self._process.send(op, *args, reply=reply, **kwargs)
        return True

    def _wait_opened(self) -> None:
        if not self._opened:
            self._wait("start")

    def _wait(self, op: str) -> Any:
        """Read replies up to `op`'s; a failure reported on the way raises (required) or turns tracking off."""
        value = None
        while self._process is not None and self._process.expected:
            done, reply = self._process.receive()
            if done == "start":
                self._opened = True
                self._run_id, self._store = reply.get("run_id"), reply.get("store")
            if reply.get("error"):
                self._fail(reply["error"])
            if done == op:
                value = reply.get("value")
                break
        return value

    def _fail(self, message: str) -> None:
        if self.required:
            raise TrackingError(message)
        warnings.warn(f"{message}; tracking disabled for the rest of the stage", stacklevel=4)
        self._run_id, self._opened = None, True
        if self._process is not None:
            process, self._process = self._process, None
            process.close()


def start_tracking(stage: str, tracking: TrackingParams) -> StageRun:
    """Start the tracking process for `stage` (it imports MLflow and opens the store meanwhile); the run
    itself opens at `open_run`. An HTTP server that does not answer fails here, or warns and gives a
    disabled run with `required: false`."""
    uri = tracking_uri(tracking.uri)
    limit_http_waits(tracking.connect_timeout_s)
    try:
        check_backend(uri, tracking.connect_timeout_s)
    except TrackingError as error:
        if tracking.required:
            raise
        warnings.warn(f"tracking disabled for stage '{stage}': {error}; metrics go to local files only",
                      stacklevel=2)
        return StageRun(None, required=False)
    run = StageRun(_Process(uri, tracking), tracking.required)
    if (db := sqlite_file(uri)) is not None and not db.exists():
        # A new local store: MLflow makes its tables in several steps, which a kill would leave half made
        # (and every later stage failing on them), so the work starts only once they are all there.
        run._store_ready()
    return run


@contextlib.contextmanager
def stage_run(stage: str, tracking: TrackingParams, tags: Mapping[str, str],
              run: StageRun | None = None) -> Iterator[StageRun]:
    """The stage's MLflow run, open for the block: ended when it completes, marked FAILED if it raises.
    Pass the `run` that `start_tracking` gave earlier, to have had MLflow load while the stage prepared."""
    run = run if run is not None else start_tracking(stage, tracking)
    try:
        run._send("start", stage, dict(tags), reply=True)
        try:
            yield run
            run.end()
        except BaseException:
            run.mark_failed()
            raise
    finally:
        if run._process is not None:
            run._process.close()


# ---------------------------------------------------------------------------- the tracking process's side


def serve(commands: IO[str], replies: IO[str], uri: str, experiment: str, required: bool) -> None:
    """Run the ops the stage sends, in order, until `close` (or until the stage's end of the pipe closes, which
    means the stage died: its run is then marked FAILED).

    The first failure stops the logging; it is reported in the next reply, where the stage raises it
    (`required`) or turns tracking off.
    """
    from scratchlm.lineage.tracking import MlflowRun, open_store, start_run

    failure: str | None = None
    try:
        store = open_store(experiment, uri)  # the slow part, done before the stage asks for anything
    except Exception as error:
        store, failure = None, _one_line(error, uri)
    run: MlflowRun | None = None
    for line in commands:
        message = json.loads(line)
        op, args, kwargs = message["op"], message["args"], message["kwargs"]
        if op == "close":
            return
        value = None
        if failure is None and store is not None:
            try:
                if op == "start":
                    run = start_run(args[0], store, uri, args[1])
                elif run is not None:
                    value = getattr(run, op)(*args, **kwargs)
            except Exception as error:
                failure = _one_line(error, uri)
        elif op == "mark_failed" and run is not None:
            run.mark_failed(**kwargs)
        if message["reply"]:
            reply: dict[str, Any] = {"value": value}
            if op == "start" and run is not None:
                reply.update(run_id=run.run_id, store=run.store)
            if failure is not None:
                reply["error"] = failure
                if not required:  # told once: the stage turns tracking off
                    failure, run = None, None
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    if run is not None and not run.ended:
        run.mark_failed()  # the stage's end of the pipe closed without `close`: it died mid-run


def _one_line(error: Exception, uri: str) -> str:
    message = str(error) if isinstance(error, TrackingError) else f"MLflow backend {uri}: {error}"
    return (message.strip().splitlines() or [type(error).__name__])[0]


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="the tracking process of one stage (started by stage_run)")
    parser.add_argument("--reply-fd", type=int, required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--required", choices=["true", "false"], required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    limit_http_waits(args.timeout)
    with os.fdopen(args.reply_fd, "w", encoding="utf-8") as replies:
        serve(sys.stdin, replies, args.uri, args.experiment, args.required == "true")
    # Every op is done and answered, the run ended in the store: skip the interpreter's teardown of MLflow and
    # SQLAlchemy (close to a second), which the stage would otherwise wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
