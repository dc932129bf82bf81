"""Where a stage logs and computes, never what it writes: the tracking and executor sections."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from scratchlm.config.base import Section

# --------------------------------------------------------------------------------------------
# tracking (read by every stage, never a DVC param: it changes no output bytes)
# --------------------------------------------------------------------------------------------


class TrackingParams(Section):
    """Where runs are logged; `required: false` lets a stage go on with local metrics only."""

    uri: str | None = Field(default=None, min_length=1, description="the MLflow tracking store every stage, the "
                            "audit and the CLI use: a server (`http://host:5000`) or `sqlite:///mlflow.db` (the "
                            "default); the environment's MLFLOW_TRACKING_URI wins over it, as in MLflow itself")
    experiment: str = Field(default="scratchlm", min_length=1, description="the MLflow experiment of every run")
    required: bool = Field(default=True, description="false: a store that does not answer is reported once and "
                           "the stage goes on with its local metrics files only")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="seconds to wait for a tracking "
                                     "server before the stage fails naming it")


# --------------------------------------------------------------------------------------------
# executor (read by the data stages, never a DVC param: the outputs are the same bytes on either)
# --------------------------------------------------------------------------------------------


class RayParams(Section):
    """How the data stages reach a Ray cluster and size their tasks (`executor.kind: ray`)."""

    address: str = Field(default="auto", min_length=1, description="auto (RAY_ADDRESS or the local cluster), "
                         "host:port of a head node, or ray://host:port through Ray Client")
    num_cpus: float = Field(default=1.0, gt=0, le=256, description="CPUs each task (one shard, one chunk) reserves")
    max_in_flight: int = Field(default=32, ge=1, le=100_000, description="tasks submitted ahead of the result "
                               "being consumed: bounds the results held in memory, keeps every worker busy")


class ExecutorParams(Section):
    """Where the per-shard work of clean, dedup and tokenize runs: `local`, a process pool of each stage's
    `num_proc`/`num_threads` on this machine (the default), or `ray`, an existing Ray cluster."""

    kind: Literal["local", "ray"] = Field(default="local", description="local: a process pool on this machine; ray: "
                                                                       "the Ray cluster of ray.address")
    ray: RayParams = Field(default_factory=RayParams, description="used with kind: ray")
