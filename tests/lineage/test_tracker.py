"""The tracking process: the stage works while MLflow loads, failures still fail the stage before its swap,
and a stage that dies leaves a FAILED run, not a running one."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from scratchlm.config.runtime import TrackingParams
from scratchlm.lineage.tracker import stage_run
from scratchlm.lineage.tracking import TrackingError


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_stage_never_imports_mlflow_and_its_work_starts_at_once(local_backend: str, tmp_path: Path) -> None:
    result = _python("""
        import sys, time
        from scratchlm.config.runtime import TrackingParams
        from scratchlm.lineage.tracker import stage_run
        with stage_run("clean", TrackingParams(experiment="t"), {}):
            pass  # the store exists now: a new one is made before the work starts (the next test)
        start = time.monotonic()
        with stage_run("clean", TrackingParams(experiment="t"), {}) as run:
            waited = time.monotonic() - start
            run.log_metrics({"x": 1.0})
        print(waited, "mlflow" in sys.modules, run.run_id)
    """, tmp_path)
    waited, imported, run_id = result.stdout.split()
    assert result.returncode == 0, result.stderr
    assert imported == "False"
    assert float(waited) < 1.0  # MLflow's import and store alone take ~2 s here: it was not waited for
    assert mlflow.get_run(run_id).data.metrics == {"x": 1.0}


def test_a_failed_upload_fails_the_stage_when_its_run_ends(local_backend: str, tmp_path: Path) -> None:
    (tmp_path / "mlartifacts").write_text("not a folder")  # the store's artifact folder cannot be made
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(TrackingError, match="could not log the artifact a.txt"), \
            stage_run("clean", TrackingParams(experiment="t"), {}) as run:
        run.log_artifact(tmp_path / "a.txt")
    assert mlflow.get_run(run.run_id).info.status == "FAILED"


def test_a_failed_upload_turns_tracking_off_when_not_required(local_backend: str, tmp_path: Path) -> None:
    (tmp_path / "mlartifacts").write_text("not a folder")
    (tmp_path / "a.txt").write_text("a")
    with pytest.warns(UserWarning, match="tracking disabled"), \
            stage_run("clean", TrackingParams(experiment="t", required=False), {}) as run:
        run.log_artifact(tmp_path / "a.txt")
        run.end()
        run.log_metrics({"after": 1.0})  # dropped, no error
    assert run.run_id is None


def test_a_store_that_cannot_open_fails_the_stage_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(TrackingError) as raised, stage_run("clean", TrackingParams(experiment="t"), {}):
        pass
    assert "mlflow.db" in str(raised.value) and "\n" not in str(raised.value)


def test_a_killed_stage_leaves_its_run_failed_not_running(local_backend: str, tmp_path: Path) -> None:
    result = _python("""
        import os, signal, time
        from scratchlm.config.runtime import TrackingParams
        from scratchlm.lineage.tracker import stage_run
        with stage_run("clean", TrackingParams(experiment="t"), {}) as run:
            print(run.run_id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """, tmp_path)
    run_id = result.stdout.split()[0]
    deadline = time.monotonic() + 60
    while mlflow.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert mlflow.get_run(run_id).info.status == "FAILED"


def test_a_new_local_store_is_whole_before_the_work_starts(local_backend: str, tmp_path: Path) -> None:
    """MLflow makes a new database's tables in several steps: a stage killed in its work must not leave them half
    made (the next stage then failed on `table … already exists`), so a new store is opened before the work."""
    import sqlite3

    with stage_run("clean", TrackingParams(experiment="t"), {}), sqlite3.connect(tmp_path / "mlflow.db") as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
        version = db.execute("select version_num from alembic_version").fetchone()
    assert {"runs", "experiments", "metrics", "alembic_version"} <= tables and version


def test_a_folder_is_logged_before_the_stage_writes_into_it_again(local_backend: str, tmp_path: Path) -> None:
    """evaluate and report log their staged output folder, and the runner then writes the manifest into it
    through a temporary file: copied later, the folder changed under the copy (a FileNotFoundError for the
    renamed temporary file, seen on busy cores). Logged before log_artifact returns, it is copied as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("a")
    with stage_run("evaluate", TrackingParams(experiment="t"), {}) as run:
        run.log_artifact(out, artifact_path="evaluation")
        (out / ".manifest.json.tmp").write_text("{}")  # what the runner does next, and renames away
        (out / ".manifest.json.tmp").rename(out / "manifest.json")
        logged = sorted(p.name for p in Path(mlflow.get_run(run.run_id).info.artifact_uri.removeprefix("file://"),
                                             "evaluation").iterdir())
    assert logged == ["a.txt"]
