"""Exact resume after SIGKILL: a pretraining process killed without warning (no exception, no Ctrl-C
handler, no atexit) resumes from its last periodic `last.ckpt` and ends with bit-identical weights.

Each run is a separate Python process calling `pretrain()` (what `python -m pipelines.pretrain` runs,
without MLflow and the stage wiring); the killed run sleeps after each step so the kill lands mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_tokens import build_token_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PARAMS = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}, "batch_size": 4,
          "max_steps": 40, "warmup_steps": 4, "val_every": 10, "val_windows": 2, "log_every": 1, "ckpt_every": 5,
          "sample_tokens": 4, "compile": False, "precision": "32-true", "num_threads": 1, "accelerator": "cpu",
          "devices": 1, "deterministic": True, "seed": 11}
KILL_AFTER = 12  # kill once a checkpoint past this step is on disk

DRIVER = """
import json, sys, time
from pathlib import Path
import lightning as L
from scratchlm.config.training import PretrainParams
from scratchlm.training.pretrain import pretrain

class Slow(L.Callback):
    def __init__(self, seconds):
        self.seconds = seconds
    def on_train_batch_end(self, *args):
        time.sleep(self.seconds)

if __name__ == "__main__":
    tokens, tok, out, ckpt = map(Path, sys.argv[1:5])
    params, sleep = PretrainParams(**json.loads(sys.argv[5])), float(sys.argv[6])
    log = lambda metrics, step: print("STEP", step, flush=True)
    metrics, _ = pretrain(tokens, tok, out, ckpt, params, log, [Slow(sleep)])
    print("METRICS", json.dumps(metrics), flush=True)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    words = ["the", "a", "history", "of", "city", "river", "town", "bridge", "market", "king", "and", "was", "in"]
    return build_token_data(tmp_path_factory.mktemp("sigkill"), words)


def command(data: tuple[Path, Path], tmp: Path, name: str, sleep: float, params: dict) -> list[str]:
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    (tmp / name).mkdir(exist_ok=True)
    return [sys.executable, str(driver), *map(str, data), str(tmp / name), str(tmp / f"{name}-ckpt"),
            json.dumps(params), str(sleep)]


def run_to_end(cmd: list[str]) -> list[int]:
    """Run a driver to completion; the steps it logged."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("STEP ")]


def checkpoint_step(path: Path) -> int | None:
    """The global step of `last.ckpt`, or None while there is none (Lightning writes it atomically)."""
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "model.safetensors")


@pytest.mark.parametrize("dropout", [0.1])  # dropout draws from the restored RNG: masks must match too (0 is the easy case)
def test_sigkilled_run_resumes_to_bit_identical_weights(data, tmp_path: Path, dropout: float) -> None:
    started = time.perf_counter()
    params = {**PARAMS, "model": {**PARAMS["model"], "dropout": dropout}}
    run_to_end(command(data, tmp_path, "full", 0.0, params))

    process = subprocess.Popen(command(data, tmp_path, "killed", 0.15, params), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    last = tmp_path / "killed-ckpt" / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while (step := checkpoint_step(last)) is None or step < KILL_AFTER:
            assert process.poll() is None, f"the run ended (status {process.returncode}) before step {KILL_AFTER}"
            assert time.monotonic() < deadline, f"no checkpoint past step {KILL_AFTER} in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(last)
    assert killed_at is not None and KILL_AFTER <= killed_at < PARAMS["max_steps"]
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "a killed run exports nothing"

    logged = run_to_end(command(data, tmp_path, "killed", 0.0, params))
    assert logged and logged[0] == killed_at + 1, f"resumed at {logged[:1]}, expected step {killed_at + 1}"

    full, resumed = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), f"{key} differs after resuming from step {killed_at}"
    print(f"killed after step {killed_at}; three runs in {time.perf_counter() - started:.1f}s")
