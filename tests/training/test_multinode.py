"""Pretraining on several nodes: two "nodes" of one CPU process each on 127.0.0.1 (gloo), each started
from outside as torchrun or srun would start it (MASTER_ADDR, MASTER_PORT, NODE_RANK, LOCAL_RANK,
WORLD_SIZE), each in its own workspace as on its own machine, running the real stage script.

What it proves: the two ranks end with the weights of one process with twice the batch; rank 0 alone
writes the outputs, manifest, run record, MLflow run and checkpoint (rank 1's workspace is unchanged
to the byte); a rank killed mid-run fails the other in one line with nothing swapped in; FSDP on CPU
is refused by Lightning, and with that guard bypassed (test-only shim) trains like DDP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from ports import free_port
from safetensors.torch import load_file
from stage_cli import REPO, merge, set_params, stage_argv
from test_pretrain import TINY
from tiny_tokens import build_token_data
from torch.utils.data import DataLoader

from scratchlm.config.training import PretrainParams
from scratchlm.io import sha256_file, tree_sha256
from scratchlm.launch import check_launch
from scratchlm.scaling.chosen import decision
from scratchlm.tokens import read_tokens
from scratchlm.training.data import RandomWindows, window_offset
from scratchlm.training.pretrain import build_trainer, pretrain

pytestmark = [pytest.mark.slow]

BATCH, STEPS = 4, 6
#: Per device. Adamw (FSDP's), a strong decay and a tight clip: a decay on the wrong parameters or a
#: norm clipped per shard would move the weights far beyond the tolerance; dropout 0, fp32.
NODE = {**TINY, "model": {**TINY["model"], "dropout": 0.0, "size": "fixed"}, "optimizer": "adamw", "weight_decay": 1.0,
        "grad_clip": 0.05, "max_steps": STEPS, "val_every": 3, "ckpt_every": 3, "log_every": 1,
        "batch_size": BATCH, "num_nodes": 2, "devices": 1, "strategy": "ddp", "dist_timeout_minutes": 1.0}
#: One process seeing what both nodes see together.
ONE = {**NODE, "batch_size": 2 * BATCH, "num_nodes": 1, "strategy": "auto"}
#: Launcher variables a developer's shell might hold: each node gets exactly the ones below.
FOREIGN = ("RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_PROCID",
           "SLURM_LOCALID", "SCRATCHLM_DEBUG")


def section(override: dict[str, Any]) -> dict[str, Any]:
    """The repository's pretrain section with `override` on top: what every run here trains with."""
    repo = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["pretrain"]
    return merge(repo, override)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    words = ["the", "a", "history", "of", "city", "river", "town", "bridge", "market", "king", "and", "was", "in", "to", "is"]
    return build_token_data(tmp_path_factory.mktemp("multinode"), words)


@pytest.fixture(scope="module")
def reference(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process, batch 2B, in this interpreter: the weights and metrics the two nodes must reach."""
    root = tmp_path_factory.mktemp("one")
    metrics, _ = pretrain(*data, root / "out", root / "ckpt", PretrainParams(**section(ONE)))
    return {"metrics": metrics, "weights": load_file(root / "out" / "model.safetensors"),
            "samples": (root / "out" / "samples.txt").read_text(encoding="utf-8")}


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, rtol=1e-4), \
            f"{key}: max diff {(got[key] - want[key]).abs().max():.2e}"


def workspace(root: Path, data: tuple[Path, Path], params: dict[str, Any]) -> Path:
    """A node's checkout: params.yaml and the stage's inputs where dvc.yaml says (no shared filesystem)."""
    root.mkdir(parents=True)
    shutil.copytree(data[0], root / "data" / "tokens")
    shutil.copytree(data[1], root / "models" / "tokenizer")
    choice = root / "reports" / "scaling" / "choice.json"  # scaling_fit's decision for a fixed-size pretrain
    choice.parent.mkdir(parents=True)
    choice.write_text(json.dumps(decision({}, from_ladder=False)))
    set_params(root, {"pretrain": params})
    return root


def node_env(cwd: Path, rank: int, port: int) -> dict[str, str]:
    """What a hand launch sets on node `rank` (Lightning's LightningEnvironment; `scratchlm.launch`)."""
    env = {name: value for name, value in os.environ.items() if name not in FOREIGN}
    return {**env, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank), "LOCAL_RANK": "0",
            "WORLD_SIZE": "2"}


def launch(commands: list[list[str]], cwds: list[Path], logs: Path) -> list[subprocess.Popen]:
    """Rank r runs commands[r] in cwds[r], both at once; output to `logs/rank<r>.out|err` (two pipes read one
    after the other could fill and block)."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(command, cwd=cwd, env=node_env(cwd, rank, port), text=True,
                             stdout=(logs / f"rank{rank}.out").open("w"), stderr=(logs / f"rank{rank}.err").open("w"))
            for rank, (command, cwd) in enumerate(zip(commands, cwds, strict=True))]


def stop(processes: list[subprocess.Popen]) -> None:
    """Kill (by its own handle) whatever this test started and is still running."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit statuses; at the deadline, kills what is still running and fails."""
    deadline = time.monotonic() + timeout
    try:
        return [process.wait(timeout=max(0.1, deadline - time.monotonic())) for process in processes]
    finally:
        stop(processes)


def stage(nodes: list[Path], logs: Path) -> list[subprocess.Popen]:
    """`python -m pipelines.pretrain …` as dvc.yaml runs it, on every node."""
    return launch([[sys.executable, "-m", *stage_argv("pretrain")]] * len(nodes), nodes, logs)


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def nodes(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`python -m pipelines.pretrain` on two nodes, run once: their workspaces, logs and rank 1's files before."""
    root = tmp_path_factory.mktemp("nodes")
    node0, node1 = (workspace(root / f"node{rank}", data, NODE) for rank in (0, 1))
    before = files(node1)
    started = time.perf_counter()
    codes = finish(stage([node0, node1], root / "logs"), timeout=150)
    seconds = time.perf_counter() - started
    errors = [(root / "logs" / f"rank{rank}.err").read_text()[-3000:] for rank in (0, 1)]
    assert codes == [0, 0], f"exit {codes}:\n{errors[0]}\n---\n{errors[1]}"
    return {"node0": node0, "node1": node1, "rank1_before": before, "root": root, "seconds": seconds}


@pytest.mark.timeout(240)
def test_two_nodes_train_like_one_process_with_twice_the_batch(nodes, reference) -> None:
    out = nodes["node0"] / "models" / "pretrain"
    assert_same_weights(load_file(out / "model.safetensors"), reference["weights"])
    metrics = json.loads((nodes["node0"] / "reports" / "metrics" / "pretrain.json").read_text())
    want = reference["metrics"]
    assert metrics["steps"] == STEPS and metrics["tokens_seen"] == want["tokens_seen"] == STEPS * 2 * BATCH * 32
    # train loss: the mean over the ranks; val loss: every rank scores all windows, as the one process does
    assert metrics["train_loss"] == pytest.approx(want["train_loss"], abs=1e-5)
    assert metrics["val_loss"] == pytest.approx(want["val_loss"], abs=1e-5)
    # MFU (a timing, in the run record) against one device's measured peak, times the two devices; or none,
    # where the two nodes' probes ran on the same core at once (each saw the other as a busy core)
    timing = json.loads((nodes["node0"] / "reports" / "runs" / "pretrain.json").read_text())["timing"]
    if timing["peak_tflops_source"] == "measured":
        assert timing["mfu"] == pytest.approx(timing["tokens_per_s"] * metrics["flops_per_token"]
                                              / (timing["peak_tflops"] * 1e12 * 2))
    else:
        assert timing["peak_tflops_source"].startswith("not measured")
        assert timing["mfu"] is None and timing["peak_tflops"] is None
    assert (out / "samples.txt").read_text(encoding="utf-8") == reference["samples"]
    print(f"two nodes through the stage in {nodes['seconds']:.1f}s")


@pytest.mark.timeout(240)
def test_rank_zero_alone_writes_outputs_manifest_run_record_and_checkpoint(nodes) -> None:
    node0, node1 = nodes["node0"], nodes["node1"]
    manifest = json.loads((node0 / "models" / "pretrain" / "manifest.json").read_text())
    assert manifest["stage"] == "pretrain"
    assert manifest["params"]["num_nodes"] == 2 and manifest["params"]["strategy"] == "ddp"
    record = json.loads((node0 / "reports" / "runs" / "pretrain.json").read_text())
    assert record["mlflow_run_id"] and record["manifest_sha256"] and (node0 / "mlflow.db").is_file()
    assert (node0 / "reports" / "plots" / "pretrain_loss.csv").is_file()
    state = torch.load(node0 / "checkpoints" / "pretrain" / "last.ckpt", weights_only=True)
    assert state["global_step"] == STEPS
    assert files(node1) == nodes["rank1_before"], "rank 1 must write nothing: no output, checkpoint, record or run"


@pytest.mark.timeout(240)
def test_a_killed_rank_fails_the_stage_in_one_line_and_nothing_is_swapped_in(nodes) -> None:
    node0, node1 = nodes["node0"], nodes["node1"]
    kept = {path: tree_sha256(node0 / path) for path in ("models/pretrain", "reports")}
    endless = {**NODE, "max_steps": 10_000, "ckpt_every": 2}  # never reached: rank 1 dies after step 2
    for node in (node0, node1):
        set_params(node, {"pretrain": endless})
    shutil.rmtree(node0 / "checkpoints")  # so the first last.ckpt seen is this run's
    rank0, rank1 = stage([node0, node1], nodes["root"] / "crash")
    try:
        deadline = time.monotonic() + 120
        while not (node0 / "checkpoints" / "pretrain" / "last.ckpt").exists():
            assert rank0.poll() is None and rank1.poll() is None, "a rank ended before step 2"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        os.kill(rank1.pid, signal.SIGKILL)
        killed = time.monotonic()
        codes = finish([rank0, rank1], timeout=90)
    finally:
        stop([rank0, rank1])
    assert codes[1] == -signal.SIGKILL
    stderr = (nodes["root"] / "crash" / "rank0.err").read_text()
    assert codes[0] == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "rank 0 of 2 lost another rank" in errors[0] and "PeerLostError" in errors[0], errors
    assert {path: tree_sha256(node0 / path) for path in kept} == kept, "the previous outputs must stay in place"
    assert not list((node0 / "models").glob(".pretrain*")), "no staged output left behind"
    print(f"rank 0 failed {time.monotonic() - killed:.1f}s after rank 1 was killed: {errors[0]}")


def test_fsdp_on_cpu_is_refused_by_lightning(tmp_path: Path) -> None:
    """Lightning 2.x: FSDP only with a CUDA accelerator ("auto" on a machine without one resolves to cpu)."""
    params = PretrainParams(**section({**NODE, "strategy": "fsdp", "num_nodes": 1}))
    with pytest.raises(ValueError) as refused:
        build_trainer(params, "32-true", tmp_path, [])
    assert str(refused.value) == (
        "The strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`. Please set "
        "`accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance to use FSDP.")


#: FSDP on CPU with the two guards bypassed, to exercise our FSDP code (optimizer groups, clipping, the
#: gathered export and samples, the full checkpoint) with real shards where no GPU is: Lightning refuses
#: FSDP on CPU by exact type (a subclass passes); torch's FSDP refuses a CPU module unless `device_id` is
#: the CPU; and its full state dict with `offload_to_cpu=True` (Lightning's, for checkpoints) crashes
#: the process (SIGSEGV) when the weights are on the CPU already.
FSDP_ON_CPU = """
import json, sys
from pathlib import Path
import torch
import lightning.pytorch.strategies.fsdp as lightning_fsdp
from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP, StateDictType
from torch.distributed.fsdp.api import FullOptimStateDictConfig
import scratchlm.training.pretrain as P
from scratchlm.config.training import PretrainParams

class CPUFSDP(lightning_fsdp.FSDPStrategy):
    def _setup_model(self, model):
        kwargs = {k: v for k, v in self.kwargs.items() if k != "auto_wrap_policy"}
        model = FSDP(model, device_id=torch.device("cpu"), sharding_strategy=self.sharding_strategy, **kwargs)
        return super()._setup_model(model)

def full_state_on_cpu(module, world_size, rank0_only=True):
    return FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=rank0_only),
                                FullOptimStateDictConfig(rank0_only=rank0_only))

def make_strategy(params, real=P.make_strategy):
    strategy = real(params)  # the stage's own FSDPStrategy and settings, under the CPU-capable class
    strategy.__class__ = CPUFSDP
    return strategy

lightning_fsdp._get_full_state_dict_context = full_state_on_cpu
P.make_strategy = make_strategy

if __name__ == "__main__":
    tokens, tok, out, ckpt = map(Path, sys.argv[1:5])
    log = lambda metrics, step: print("LOG", json.dumps(metrics), flush=True)
    metrics, _ = P.pretrain(tokens, tok, out, ckpt, PretrainParams(**json.loads(sys.argv[5])), log)
    print("METRICS", json.dumps(metrics), flush=True)
"""


@pytest.mark.timeout(240)
def test_fsdp_on_two_cpu_nodes_trains_like_one_process(data, reference, tmp_path: Path) -> None:
    driver = tmp_path / "fsdp_on_cpu.py"
    driver.write_text(FSDP_ON_CPU)
    params = json.dumps(section({**NODE, "strategy": "fsdp"}))
    outs, logs = [tmp_path / f"out{rank}" for rank in (0, 1)], tmp_path / "logs"
    commands = [[sys.executable, str(driver), *map(str, data), str(out), str(tmp_path / "ckpt"), params] for out in outs]
    started = time.perf_counter()
    codes = finish(launch(commands, [tmp_path, tmp_path], logs), timeout=150)
    assert codes == [0, 0], "\n---\n".join((logs / f"rank{rank}.err").read_text()[-3000:] for rank in (0, 1))
    assert_same_weights(load_file(outs[0] / "model.safetensors"), reference["weights"])
    assert (outs[0] / "samples.txt").read_text(encoding="utf-8") == reference["samples"]
    assert not outs[1].exists() or not any(outs[1].iterdir()), "rank 1 exports nothing"
    logged = [json.loads(line[4:]) for line in (logs / "rank0.out").read_text().splitlines() if line.startswith("LOG ")]
    assert max(m.get("grad_norm", 0) for m in logged) > NODE["grad_clip"], "the clip must have been active"
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert state["global_step"] == STEPS
    assert state["state_dict"]["model.wte.weight"].shape == (300, 32), "a full state dict, not rank 0's shard"
    print(f"FSDP on two CPU ranks in {time.perf_counter() - started:.1f}s")


def test_ranks_together_draw_the_one_process_batch(data: tuple[Path, Path]) -> None:
    """Rank r of 2 takes samples start + r, start + r + 2, …: each step's micro-batches of the ranks are the
    one-process micro-batch of twice the size; with one rank the stream is start, start + 1, … as before."""
    train, start = data[0] / "train.json", 16

    def batches(rank: int, world: int, size: int) -> list[torch.Tensor]:
        loader = iter(DataLoader(RandomWindows(train, 32, seed=7, start=start, rank=rank, world_size=world),
                                 batch_size=size))
        return [next(loader)[0] for _ in range(3)]

    def rows(batch: torch.Tensor) -> list[tuple[int, ...]]:
        return sorted(tuple(row.tolist()) for row in batch)

    one, ranks = batches(0, 1, 2 * BATCH), [batches(rank, 2, BATCH) for rank in (0, 1)]
    for step in range(3):
        assert rows(one[step]) == rows(torch.cat([ranks[0][step], ranks[1][step]]))
    tokens = read_tokens(train)
    for i in range(2 * BATCH):  # one process: sample start + i is the i-th row, as before ranks existed
        offset = window_offset(7, start + i, len(tokens), 33)
        assert one[0][i].tolist() == [int(t) for t in tokens[offset : offset + 32]]


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no launcher started this process"),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}, "MASTER_PORT not set"),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "4"},
     "WORLD_SIZE=4, but pretrain.num_nodes × devices is 2 × 1 = 2"),
])
def test_a_multinode_start_that_would_hang_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_launch(2, 1, env)


def test_launches_that_work_pass() -> None:
    check_launch(1, "auto", {})
    check_launch(2, 1, {"LOCAL_RANK": "0", "NODE_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "2"})
    check_launch(2, 8, {"TORCHELASTIC_RUN_ID": "x", "LOCAL_RANK": "0", "GROUP_RANK": "1", "WORLD_SIZE": "16"})
    check_launch(2, 8, {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_JOB_NAME": "train"})


def test_ranks_that_resumed_from_different_steps_are_stopped() -> None:
    """A node whose checkpoint folder is its own starts over while the others resume: refused at the start."""
    from types import SimpleNamespace

    from scratchlm.training.checkpoint import SameStart

    def trainer(steps: list[int]) -> SimpleNamespace:
        strategy = SimpleNamespace(all_gather=lambda step: torch.tensor(steps))
        return SimpleNamespace(world_size=len(steps), global_step=steps[0], strategy=strategy)

    module = SimpleNamespace(device=torch.device("cpu"))
    SameStart().on_train_start(trainer([6, 6]), module)
    with pytest.raises(ValueError, match=r"different steps \(\[6, 0\]\): the checkpoint folder must be the same"):
        SameStart().on_train_start(trainer([6, 0]), module)
