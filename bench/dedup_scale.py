"""dedup at ×1, ×10, ×100 of the default corpus, on a local pool and on a 3-node Ray cluster on this machine.

The corpus is data/clean made `scale` times larger (copy 0 as it is; every other copy's documents with a
fifth of their words replaced, one in 50 with one word in a hundred: a near duplicate to find). Each run is
a child process: per-phase wall time, the driver's peak RSS (VmHWM of the process that runs dedup_corpus),
the largest task process's peak RSS (pool workers, or Ray's worker processes), and the output's digest
(every executor must write the same bytes). From the ×100 runs, the projection: per-phase core-seconds
per MB, the driver's seconds per MB (its serial part: union-find over confirmed pairs, the write plan,
the cluster merge), for 10 GB / 100 GB / 1 TB on 1 / 8 / 64 nodes of 32 cores.
Writes reports/bench/dedup_scale.json.
Usage: python bench/dedup_scale.py [--scale 1 10 100] [--executors local ray]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _memory import vm_hwm_mb

from scratchlm.config.data import DedupParams
from scratchlm.config.runtime import RayParams
from scratchlm.data.dedup import dedup_corpus
from scratchlm.data.parallel import LocalExecutor, RayExecutor
from scratchlm.io import document_shards, list_files, read_documents, write_documents

MB = 1e6
PARALLEL = ("signatures", "lsh", "confirm", "clusters", "decontaminate", "write")
WORKERS = 2  # a local pool of 2, or two 1-CPU Ray worker nodes (the head node runs no task)


def scaled(clean: Path, dest: Path, scale: int) -> float:
    """data/clean `scale` times (see the module docstring); returns MB of text."""
    from data_throughput import perturbed
    size, rng = 0, random.Random(0)
    for copy in range(scale):
        for shard in document_shards(clean):
            docs = [{**d, "id": f"{d['id']}~{copy}", "text": perturbed(rng, d["text"], copy, i)}
                    for i, d in enumerate(read_documents(shard))]
            size += sum(len(d["text"].encode("utf-8")) for d in docs)
            (dest / shard.parent.name).mkdir(parents=True, exist_ok=True)
            write_documents(dest / shard.parent.name / f"{shard.stem}-{copy:03d}.parquet", docs)
    return size / MB


def ray_worker_peak_mb() -> float:
    """The largest VmHWM among this machine's Ray worker processes (`ray::…` command lines)."""
    peak = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::"):
                status = (proc / "status").read_text().splitlines()
                peak = max(peak, next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")))
        except (OSError, StopIteration):
            continue
    return peak


def child(clean: Path, out: Path, address: str) -> None:
    """One dedup run in this process; prints its figures as JSON."""
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    params = DedupParams(**raw["dedup"])
    executor = (LocalExecutor(WORKERS) if address == "local"
                else RayExecutor(RayParams(address=address, num_cpus=1, max_in_flight=8)))
    evaluation = [Path("data/raw/benchmark"), Path("data/raw/instruction")]
    started = time.perf_counter()
    metrics = dedup_corpus(clean, evaluation, out, params, executor)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for path in list_files(out):
        digest.update(path.relative_to(out).as_posix().encode() + path.read_bytes())
    workers = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if address == "local"
               else ray_worker_peak_mb())
    print(json.dumps({"seconds": seconds, "phases": metrics["seconds"], "driver_peak_mb": vm_hwm_mb(),
                      "task_peak_mb": workers, "digest": digest.hexdigest(), "tasks": metrics["executor_tasks"],
                      "pairs": metrics["lsh"], "docs": metrics["docs_in"],
                      "nodes": executor.describe().get("tasks_per_node")}))


class LocalRay:
    """A head node (no CPU: it schedules, like a cluster's head) and two 1-CPU worker nodes on 127.0.0.1."""

    def __init__(self, port: int = 6479) -> None:
        self.address, self.temp = f"127.0.0.1:{port}", tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.processes: list[subprocess.Popen] = []
        self._start("--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard=false",
                    "--temp-dir", self.temp)
        for _ in range(WORKERS):
            self._start("--address", self.address, "--num-cpus", "1")

    def _start(self, *args: str) -> None:
        ray_cli = Path(sys.executable).parent / "ray"
        self.processes.append(subprocess.Popen([str(ray_cli), "start", "--block", "--node-ip-address", "127.0.0.1",
                                                "--disable-usage-stats", *args], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 120
        while self._nodes() < len(self.processes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise SystemExit("the local Ray cluster did not come up")
            time.sleep(1)

    def _nodes(self) -> int:
        ray_cli = Path(sys.executable).parent / "ray"
        status = subprocess.run([str(ray_cli), "status", "--address", self.address], capture_output=True, text=True)
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0] if not status.returncode else ""
        return sum(" node_" in line for line in active.splitlines())

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


def run_child(clean: Path, out: Path, address: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(clean), str(out), address],
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"dedup on {address} failed: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def slice_read_seconds(writers: int = 400, partitions: int = 64) -> float:
    """Seconds to read one partition's slice of one writer's shuffle file (open, map, copy), warm page cache:
    the shuffle's cost per (writer, partition), which grows as writers × partitions, not with the bytes."""
    import numpy as np

    from scratchlm.data.shuffle import hash_partition, read_partition, write_partitioned

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{w}.npy" for w in range(writers)]
        for path in paths:
            rows = np.arange(2000, dtype=np.int64)
            write_partitioned(path, rows, hash_partition(rows, partitions), partitions)
        started = time.perf_counter()
        for part in range(8):
            read_partition(paths, part, np.zeros(0, np.int64))
        return (time.perf_counter() - started) / (8 * writers)


def projection(run: dict, mb: float, slice_s: float) -> tuple[list, dict]:
    """Hours for 10 GB, 100 GB, 1 TB on 1, 8, 64 nodes of 32 cores from one run's per-phase rates: each
    task phase's core-seconds per MB spread over the cores; the shuffle's per-slice cost (writers ×
    partitions reads in the group, members and shard steps, none of which the run's size shows); the
    driver's serial seconds per MB and the fixed decontamination index added."""
    from _bench import Figure

    core_s_per_mb = sum(run["phases"].get(p, 0.0) for p in PARALLEL) * WORKERS / mb
    driver_s_per_mb = run["phases"].get("driver", 0.0) / mb
    docs_per_mb, bands = run["docs"] / mb, run["pairs"]["bands"]
    table, figures = {}, []
    for size_gb in (10, 100, 1000):
        docs = size_gb * 1000 * docs_per_mb
        tasks = docs * run["tasks"]["signature_tasks"] / run["docs"]
        shards = docs * run["tasks"]["shards"] / run["docs"]
        parts = max(1, docs * bands / (1 << 22))
        slices = (tasks + 2 * parts + 2 * shards) * parts  # sign→group, lsh→pairs, members→survivors, shard lookups
        row = {}
        for nodes in (1, 8, 64):
            cores = nodes * 32
            row[nodes] = (size_gb * 1000 * (core_s_per_mb / cores + driver_s_per_mb) + slices * slice_s / cores
                          + run["phases"].get("index", 0.0)) / 3600
        table[f"{size_gb} GB"] = row
    one_tb = table["1000 GB"]
    figures += [Figure("projection: 1 TB on 64 nodes × 32 cores", one_tb[64], "h", target=1.0, higher_is_better=False),
                Figure("projection: 1 TB, 8 → 64 nodes", one_tb[8] / one_tb[64], "x", target=5.0)]
    return figures, {"core_seconds_per_mb": core_s_per_mb, "driver_seconds_per_mb": driver_s_per_mb,
                     "slice_read_seconds": slice_s, "hours": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, nargs="*", default=[1, 10, 100])
    parser.add_argument("--executors", nargs="*", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="reports/bench/dedup_scale.json")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2])
        return
    from _bench import Figure, report  # torch: the parent's, never in the measured child
    figures, runs, extra = [], {}, {}
    cluster = LocalRay() if "ray" in args.executors else None
    try:
        for scale in args.scale:
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                mb = scaled(Path("data/clean"), Path(tmp) / "clean", scale)
                for kind in args.executors:
                    address = "local" if kind == "local" else cluster.address  # type: ignore[union-attr]
                    run = runs[(scale, kind)] = run_child(Path(tmp) / "clean", Path(tmp) / f"out-{kind}", address)
                    phases = ", ".join(f"{p} {s:.1f} s" for p, s in run["phases"].items())
                    figures += [
                        Figure(f"dedup ×{scale} ({mb:,.0f} MB) {kind}: MB/s per core", mb / run["seconds"] / WORKERS,
                               "MB/s", note=phases),
                        Figure(f"dedup ×{scale} {kind}: driver peak RSS", run["driver_peak_mb"], "MB",
                               target=600 if scale >= 100 else None, higher_is_better=False,
                               note=f"{run['docs']:,} docs, {run['tasks']}"),
                        Figure(f"dedup ×{scale} {kind}: largest task process peak RSS", run["task_peak_mb"], "MB",
                               target=1536, higher_is_better=False,
                               note=f"tasks per node {run['nodes']}" if run["nodes"] else ""),
                    ]
                    extra[f"x{scale}-{kind}"] = {**run, "mb": mb}
                if len(args.executors) == 2:
                    same = runs[(scale, "local")]["digest"] == runs[(scale, "ray")]["digest"]
                    figures.append(Figure(f"dedup ×{scale}: Ray's bytes = the pool's (1 = yes)", float(same), "bool",
                                          target=1))
                if scale == max(args.scale):
                    run = runs[(scale, args.executors[0])]
                    projected, extra["projection"] = projection(run, mb, slice_read_seconds())
                    figures += projected
    finally:
        if cluster:
            cluster.stop()
    report("dedup at scale, local pool and a 3-node Ray cluster", figures, args.out, {"runs": extra})


if __name__ == "__main__":
    main()
