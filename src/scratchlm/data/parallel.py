"""Executors: an ordered map of a per-shard function, on this machine or on a Ray cluster.

Every shard-parallel data step (clean a shard, sign a chunk of documents, tokenize a shard, look up
a shard's documents in the decontamination index) is one module-level function of one job. An
executor maps it over the jobs and hands the results back in job order, so the output bytes depend
neither on the executor nor on the number of workers:

- `LocalExecutor(workers)`: a process pool (in-process with one worker: no pickling, easy debugging);
- `RayExecutor(params)`: one Ray task per job on an existing cluster, at most `max_in_flight` ahead
  of the result being consumed. Tasks read and write the paths in their jobs, made absolute, so on a
  cluster of several hosts the repository must be on a filesystem they share (NFS, Lustre: what
  Slurm clusters have), and `scratchlm` must be installed on every node.
"""

from __future__ import annotations

import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from scratchlm.config.runtime import ExecutorParams, RayParams

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`map(fn, items)`, results in input order, lazily consumed."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran the work, for the run record (never for the manifest: it changes no byte)."""
        ...


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes, results in input order, lazily consumed."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)


@dataclass(frozen=True)
class LocalExecutor:
    workers: int

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return parallel_map(fn, items, self.workers)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": self.workers}


class TaskFailed(RuntimeError):
    """A Ray task failed for a reason that is not one of our one-line errors (a worker died, say)."""


@dataclass(frozen=True)
class RayExecutor:
    params: RayParams
    tasks_per_node: Counter[str] = field(default_factory=Counter, compare=False)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        ray = connect(self.params.address)
        task = ray.remote(num_cpus=self.params.num_cpus, max_retries=2)(_on_node)
        pending: deque[Any] = deque()
        for item in items:
            pending.append(task.remote(fn, item))
            if len(pending) >= self.params.max_in_flight:
                yield self._count(_result(ray, pending.popleft()))
        while pending:
            yield self._count(_result(ray, pending.popleft()))

    def _count(self, placed: tuple[str, R]) -> R:
        node, result = placed
        self.tasks_per_node[node] += 1
        return result

    def describe(self) -> dict[str, Any]:
        import ray

        resources = ray.cluster_resources() if ray.is_initialized() else {}
        return {"kind": "ray", "address": self.params.address, "cluster_cpus": resources.get("CPU"),
                "nodes": sum(bool(node.get("Alive")) for node in ray.nodes()) if ray.is_initialized() else 0,
                "tasks_per_node": dict(sorted(self.tasks_per_node.items()))}


def _on_node(fn: Callable[[T], R], item: T) -> tuple[str, R]:
    """`fn(item)` and the Ray node it ran on (the run record counts the tasks each node ran)."""
    import ray

    return ray.get_runtime_context().get_node_id()[:12], fn(item)


def _result(ray: Any, ref: Any) -> Any:
    """The task's result; the task's own exception (a DataFormatError naming a file) re-raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from None
        raise TaskFailed(f"a Ray task failed: {str(error).strip().splitlines()[-1]}") from None


CONNECT_TIMEOUT_S = 10.0


def probe(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connect to `host:port` (or `ray://host:port`): without it, Ray waits minutes on an address where
    nothing listens before it gives up."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as error:
        raise ConnectionError(f"Ray cluster at {address!r} is not reachable ({error})") from None


def connect(address: str) -> Any:
    """`ray` connected to the cluster at `address` (once per process); a cluster that does not answer is a
    one-line ConnectionError naming the address, within CONNECT_TIMEOUT_S."""
    import ray

    if not ray.is_initialized():
        probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING", configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ConnectionError(f"Ray cluster at {address!r} is not reachable ({reason})") from None
    return ray


def make_executor(params: ExecutorParams | None, workers: int) -> Executor:
    """The executor the params ask for; `workers` sizes the local pool (a stage's `num_proc`)."""
    if params is not None and params.kind == "ray":
        return RayExecutor(params.ray)
    return LocalExecutor(workers)
