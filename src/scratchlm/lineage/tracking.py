"""The only module that talks to MLflow.

One MLflow run per stage execution, in one experiment, tagged so that a run can be traced to its
git commit, its DVC experiment and the runs that produced its inputs. The default backend is a
local SQLite file with artifacts beside it; `MLFLOW_TRACKING_URI` points everything at a server.
A server that does not answer fails the stage within seconds (or, with `required: false`, is
reported once and the stage goes on with its local metrics files only).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
#: Experiment tags: MLflow's kind for a model-training experiment, and the store's own id (`describe_store`).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
STORE_TAG = "scratchlm.store_id"
DEFAULT_ARTIFACTS = Path("mlartifacts")
MLFLOW_DIGEST_MAX = 36  # MLflow's limit on a dataset digest; the full sha256 is in the manifest
MLFLOW_PARAM_MAX = 6000


class TrackingError(RuntimeError):
    """The tracking backend is unusable and tracking is required."""


def main_workspace(cwd: str | Path | None = None) -> Path:
    """The workspace whose `mlflow.db` a stage logs to: the current folder, or, inside the temporary workspace
    of a DVC experiment (`<repo>/.dvc/tmp/exps/<tmp>`, where `dvc exp run --temp` and queued experiments run),
    the repository it was made from. That workspace is deleted after the run, and so would be its database
    (git-ignored files are not copied into it), leaving run records that name runs nobody has."""
    folder = Path(os.path.abspath(cwd or Path.cwd()))
    for i in range(len(folder.parts) - 3):
        if folder.parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*folder.parts[:i])
    return folder


def tracking_uri(configured: str | None = None) -> str:
    """The store every stage, the audit and the CLI use: MLFLOW_TRACKING_URI (the environment wins, as in MLflow
    itself), else params' `tracking.uri`, else `sqlite:///mlflow.db`. A relative SQLite file is the main
    workspace's (see `main_workspace`), so an experiment's temporary workspace logs where its repository does."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_URI
    main = main_workspace()
    return uri if main == Path(os.path.abspath(Path.cwd())) else resolve_uri(uri, main)


def limit_http_waits(timeout_s: float) -> None:
    """Without this MLflow retries an unreachable server for minutes before giving up."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout_s))))


def check_backend(uri: str, timeout_s: float) -> None:
    """Raise TrackingError naming the URI when an HTTP tracking server does not answer in time."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as error:
        reason = type(error).__name__
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason})") from None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow's flat `a.b.c -> str` form, values cut to MLflow's size limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:MLFLOW_PARAM_MAX]
    return flat


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict as `a.b` keys: what a stage logs, and what an audit expects."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


class MlflowRun:
    """The stage's MLflow run, as the tracking process (`scratchlm.lineage.tracker`) drives it; a disabled one
    (no run) accepts and drops everything.

    A call that fails (an unwritable artifact store, a database error) raises TrackingError naming
    what could not be logged; the stage's side (`tracker.StageRun`) decides whether that fails the stage
    (`required`) or turns tracking off.
    """

    def __init__(self, run_id: str | None, store: dict[str, str] | None = None) -> None:
        self.run_id = run_id
        self.store = store
        """The store that holds the run (`describe_store`), what the run record names."""
        self.ended = False

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    @contextlib.contextmanager
    def _logging(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            name = type(error).__name__
            raise TrackingError(f"MLflow run {self.run_id}: could not {what} ({name}: {reason})") from None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            import mlflow

            with self._logging("log the params"):
                mlflow.log_params(flatten(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.enabled:
            import mlflow

            with self._logging("set tags"):
                mlflow.set_tags(dict(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            with self._logging("log metrics"):
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        path = Path(path)
        with self._logging(f"log the artifact {path.name}"):
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path or path.name)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        if self.enabled:
            import mlflow

            with self._logging(f"log {name}"):
                mlflow.log_dict(obj, name)

    def end(self, status: str = "FINISHED") -> None:
        """End the run now (before the stage swaps its output in: ending can fail too)."""
        if self.enabled and not self.ended:
            import mlflow

            with self._logging("end the run"):
                mlflow.end_run(status=status)
        self.ended = True

    def mark_failed(self, ended: bool = False) -> None:
        """Best effort, on the way out of a failing stage: never hides the error that got us here. `ended`: the
        stage saw its run end (it failed after that), so the finished run is set FAILED."""
        if not self.enabled:
            return
        try:
            import mlflow

            if self.ended or ended:
                mlflow.MlflowClient().set_terminated(self.run_id, status="FAILED")
            else:
                mlflow.end_run(status="FAILED")
        except Exception as error:  # the backend is what failed: say so, keep the stage's own error
            log.warning("could not mark MLflow run %s FAILED: %s", self.run_id, error)
        self.ended = True

    def register_model(self, name: str, model_dir: Path, card: Path, tags: Mapping[str, str]) -> str | None:
        """Log a model folder (with the model card) under this run and register it as a new version of
        `name` in the MLflow Model Registry, where versions can be compared and promoted; returns it."""
        if not self.enabled:
            return None
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        with self._logging(f"register {name}"):
            mlflow.log_artifacts(str(model_dir), artifact_path=f"models/{name}")
            mlflow.log_artifact(str(card), artifact_path=f"models/{name}")
            client = MlflowClient()
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="Trained by the scratchlm pipeline; "
                                                                  "each version carries model_card.md")
            version = client.create_model_version(name, source=mlflow.get_artifact_uri(f"models/{name}"),
                                                  run_id=self.run_id, tags=dict(tags),
                                                  description=f"model card: models/{name}/model_card.md")
            return str(version.version)
        return None

    def adopt(self, run_ids: list[str | None]) -> None:
        """Nest these runs under this one (MLflow's parent tag): the UI shows them as its children, side by
        side in the compare view. A run id that is None (a record without MLflow) is skipped."""
        if not self.enabled:
            return
        from mlflow import MlflowClient

        client = MlflowClient()
        for run_id in run_ids:
            if run_id:
                with self._logging(f"nest run {run_id}"):
                    client.set_tag(run_id, "mlflow.parentRunId", str(self.run_id))

    def log_inputs(self, inputs: Mapping[str, Mapping[str, Any]]) -> None:
        """Each input as an MLflow dataset named by its path, with its digest, in sorted order."""
        # the tracking process logs each input under the path the stage named it by (relative to the stage's
        # folder, which is the process's too)
        if not self.enabled:
            return
        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        for path in sorted(inputs):
            with warnings.catch_warnings():  # a local path matches two equivalent source types
                warnings.simplefilter("ignore", UserWarning)
                source = resolve_dataset_source(str(Path(path).resolve()))
            digest = str(inputs[path]["sha256"])[:MLFLOW_DIGEST_MAX]
            with self._logging(f"log the input {path}"):
                mlflow.log_input(MetaDataset(source, name=path, digest=digest), context="input")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _experiment(name: str, uri: str) -> tuple[str, str]:
    """Find or create the experiment, tagged for the UI and with its store's id; (experiment id, store id).

    A local backend keeps artifacts in `mlartifacts/`. `mlflow.experimentKind` marks the experiment as model
    training, not GenAI (MLflow 3.17's UI still lands on its GenAI overview until its "Model training" switch is
    picked: README, Tracking).
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None if is_server(uri) else (main_workspace() / DEFAULT_ARTIFACTS).as_uri()
        experiment = mlflow.get_experiment(mlflow.create_experiment(name, artifact_location=location))
    tags = dict(experiment.tags)
    store = tags.get(STORE_TAG) or uuid.uuid4().hex
    for key, value in ((KIND_TAG, KIND), (STORE_TAG, store)):
        if tags.get(key) != value:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id, store


def describe_store(uri: str, store_id: str) -> dict[str, str]:
    """What a run record says of the store that holds its run: a server by its URI; a local store by its
    absolute URI and its machine (another machine's file is out of any audit's reach). `id` tells a store from
    another one at the same place (a database deleted and made anew) and follows a copy of it."""
    if is_server(uri):
        return {"kind": "server", "uri": uri, "id": store_id}
    return {"kind": "local", "uri": resolve_uri(uri, main_workspace()), "host": socket.gethostname(), "id": store_id}


def dvc_experiment() -> str | None:
    """The DVC experiment name when the stage runs under `dvc exp run` (DVC sets these variables)."""
    return os.environ.get("DVC_EXP_NAME") or os.environ.get("DVC_EXP_BASELINE_REV")


def open_store(experiment: str, uri: str) -> tuple[str, str]:
    """Point MLflow at `uri` and find or create the experiment: (experiment id, the store's id). The slow part
    of tracking (importing MLflow, opening and checking the store), which the tracking process does first."""
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    return _experiment(experiment, uri)


def start_run(stage: str, store: tuple[str, str], uri: str, tags: Mapping[str, str]) -> MlflowRun:
    """Start the stage's run in the experiment `open_store` gave; failures raise (the caller decides)."""
    import mlflow

    experiment_id, store_id = store
    run = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags={"stage": stage, **tags})
    return MlflowRun(run.info.run_id, describe_store(uri, store_id))


# ---------------------------------------------------------------------------------- reading runs (audit)


def resolve_uri(uri: str, root: Path) -> str:
    """A relative `sqlite:///file.db` URI made absolute against `root`, so an audit of another
    checkout reads that checkout's database whatever the current directory is."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri[len(prefix):]).resolve())
    return uri


def sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@functools.lru_cache(maxsize=4)
def _client(uri: str) -> Any:
    """One client per URI: building MLflow's SQL store (and checking its schema) is the slow part."""
    from mlflow import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    limit_http_waits(10)
    check_backend(uri, 10)
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)  # a corrupt database fails here, once, not on every read
    return client


@contextlib.contextmanager
def _reading(uri: str) -> Iterator[None]:
    """Any failure of the backend itself (a corrupt database, a server error) as one TrackingError line."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as error:
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise TrackingError(f"MLflow backend {uri} cannot be read ({type(error).__name__}: {reason})") from None


def read_store_id(uri: str, experiment: str) -> str | None:
    """The id the experiment carries in this store (see `describe_store`); None when the store is a local file
    that does not exist (never created by reading) or lacks the experiment; TrackingError when it cannot answer."""
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        return None
    with _reading(uri):
        found = _client(uri).get_experiment_by_name(experiment)
    return found.tags.get(STORE_TAG) if found is not None else None


def get_run_summary(run_id: str, uri: str | None = None) -> dict[str, Any] | None:
    """Status, lifecycle, params, latest metrics and tags of a run; None when the backend lacks it.

    A missing local database counts as "no such run" rather than being created empty by MLflow; a
    backend that cannot answer (or a corrupt database) raises TrackingError naming the URI.
    """
    from mlflow.exceptions import MlflowException

    uri = uri or tracking_uri()
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        return None
    with _reading(uri):
        try:
            run = _client(uri).get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    return {"run_id": run.info.run_id, "status": run.info.status, "lifecycle_stage": run.info.lifecycle_stage,
            "params": dict(run.data.params), "metrics": dict(run.data.metrics), "tags": dict(run.data.tags)}


def runs_with_manifest(stage: str, manifest_sha256: str | None, uri: str | None = None) -> list[str]:
    """Ids of the FINISHED runs of `stage` that recorded this manifest digest (any, for None), newest first.

    What an audit falls back on when a stage's run record names another output: DVC brought back an
    output that an earlier run made (`dvc checkout`, an experiment applied), and that run is the one
    that vouches for these bytes.
    """
    uri = uri or tracking_uri()
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        return []
    with _reading(uri):
        client = _client(uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        digest = f" and tags.manifest_sha256 = '{manifest_sha256}'" if manifest_sha256 else ""
        query = f"tags.stage = '{stage}'{digest} and attributes.status = 'FINISHED'"
        runs = client.search_runs(ids, filter_string=query, order_by=["attributes.start_time DESC"]) if ids else []
    return [run.info.run_id for run in runs]


def last_logged_values(run_id: str, key: str, uri: str | None = None) -> list[float]:
    """The value(s) of a metric logged last in time.

    A run's "latest" metric is the one at the highest step, but a stage logs its final metrics without
    a step (step 0) after training logged the same key at later steps; the final value is the newest.
    """
    from mlflow.exceptions import MlflowException

    try:
        history = _client(uri or tracking_uri()).get_metric_history(run_id, key)
    except (MlflowException, TrackingError):
        return []
    if not history:
        return []
    newest = max(m.timestamp for m in history)
    return [m.value for m in history if m.timestamp == newest]
