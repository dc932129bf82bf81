import socket
import time
from pathlib import Path

import mlflow
import pytest
from ports import free_port as closed_port

from scratchlm.config.runtime import TrackingParams
from scratchlm.lineage.tracker import stage_run
from scratchlm.lineage.tracking import TrackingError, flatten, tracking_uri


def test_stage_run_logs_params_metrics_inputs_and_tags(local_backend: str, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("bytes")
    with stage_run("clean", TrackingParams(experiment="t"), {"git_commit": "abc", "upstream.download": "r0"}) as run:
        run.log_params({"clean": {"min_words": 3}})
        run.log_metrics({"docs_out": 5})
        run.log_inputs({"input.txt": {"sha256": "f" * 64}})
    got = mlflow.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags["stage"] == "clean" and got.data.tags["upstream.download"] == "r0"
    assert got.data.params == {"clean.min_words": "3"}
    assert got.data.metrics == {"docs_out": 5.0}
    [dataset] = got.inputs.dataset_inputs
    assert dataset.dataset.name == "input.txt" and dataset.dataset.digest == "f" * 36
    assert mlflow.get_experiment(got.info.experiment_id).artifact_location.endswith("/mlartifacts")


def test_failed_stage_marks_the_run_failed(local_backend: str) -> None:
    with pytest.raises(ValueError), stage_run("clean", TrackingParams(experiment="t"), {}) as run:
        raise ValueError("bad input")
    assert mlflow.get_run(run.run_id).info.status == "FAILED"


def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with pytest.raises(TrackingError, match=f"{uri} is unreachable"), \
            stage_run("clean", TrackingParams(connect_timeout_s=2), {}):
        pass
    assert time.monotonic() - start < 30


def test_unreachable_server_is_a_warning_when_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    with pytest.warns(UserWarning, match="tracking disabled"), \
            stage_run("clean", TrackingParams(required=False, connect_timeout_s=2), {}) as run:
        run.log_metrics({"x": 1})
    assert run.run_id is None


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "{}"}


def test_the_tracking_uri_comes_from_params_unless_the_environment_names_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """params' `tracking.uri` (a relative SQLite file is the workspace's), else the default; MLFLOW_TRACKING_URI
    wins over both, as MLflow users expect."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == "sqlite:///mlflow.db"
    assert tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    assert tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:6000"
    inside = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"  # a queued experiment's workspace logs to its repo's
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri("sqlite:///runs.db") == f"sqlite:///{tmp_path.resolve() / 'runs.db'}"


def test_a_stage_run_logs_to_the_configured_store_and_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with stage_run("clean", TrackingParams(uri="sqlite:///team.db", experiment="t"), {}) as run:
        pass
    assert (tmp_path / "team.db").is_file() and not (tmp_path / "mlflow.db").exists()
    store = run.store or {}
    assert store["kind"] == "local" and store["uri"] == f"sqlite:///{tmp_path.resolve() / 'team.db'}"
    assert store["host"] == socket.gethostname()
    with stage_run("clean", TrackingParams(uri="sqlite:///team.db", experiment="t"), {}) as again:
        pass
    assert again.store == store  # one store, one id, however many runs
