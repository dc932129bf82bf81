"""Real Lightning training of tiny models on tiny token files."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from tiny_tokens import build_token_data

from scratchlm.config.training import PretrainParams
from scratchlm.model.gpt import load_model
from scratchlm.training.module import NonFiniteLossError, lr_at
from scratchlm.training.pretrain import pretrain

pytestmark = pytest.mark.slow
TINY = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}, "batch_size": 4, "max_steps": 8,
        "warmup_steps": 2, "val_every": 4, "val_windows": 2, "log_every": 2, "ckpt_every": 4, "sample_tokens": 4,
        "compile": False, "precision": "32-true", "num_threads": 1, "accelerator": "cpu", "devices": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    words = ["the", "a", "history", "of", "city", "river", "town", "bridge", "market", "king", "and", "was", "in", "to", "is"]
    return build_token_data(tmp_path_factory.mktemp("pretrain"), words)


def run(data: tuple[Path, Path], tmp: Path, name: str, callbacks=None, **overrides):
    out, ckpt = tmp / name, tmp / f"{name}-ckpt"
    out.mkdir(exist_ok=True)
    logged: list[tuple[dict, int]] = []
    metrics, rows = pretrain(*data, out, ckpt, PretrainParams(**{**TINY, **overrides}),
                             lambda m, s: logged.append((m, s)), callbacks)
    return metrics, rows, logged, out


def test_pretrain_exports_a_loadable_model_and_logs(data, tmp_path: Path) -> None:
    metrics, rows, logged, out = run(data, tmp_path, "a")
    assert metrics["steps"] == 8 and metrics["val_loss"] < np.log(300)
    assert 0 < metrics["unigram_val_loss"] < np.log(300)
    assert metrics["peak_tflops_source"] == "measured" and 0 < metrics["mfu"] < 1  # peak_tflops: null probes
    assert {"train_loss", "lr", "tokens_per_s", "mfu", "grad_norm"} <= set(logged[0][0])
    assert any("val_bpb" in m for m, _ in logged)
    assert [r["step"] for r in rows if r["val_loss"] != ""] == [4, 8]
    model = load_model(out)
    assert model.config.vocab_size == 300
    assert (out / "tokenizer.json").is_file() and "[step 8]" in (out / "samples.txt").read_text()


class Crash(L.Callback):
    """Dies as step `at + 1` starts (step `at`'s checkpoint is on disk), like a killed process."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize(("architecture", "optimizer"), [("gpt2", "adamw"), ("modern", "muon")])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(data, tmp_path: Path, architecture: str,
                                                                 optimizer: str) -> None:
    recipe = {"model": {**TINY["model"], "architecture": architecture}, "optimizer": optimizer}
    torch.use_deterministic_algorithms(True)
    try:
        full, *_ , full_out = run(data, tmp_path, "full", **recipe)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(data, tmp_path, "resumed", callbacks=[Crash(at=4)], **recipe)
        assert (tmp_path / "resumed-ckpt" / "last.ckpt").is_file()
        resumed, rows, logged, resumed_out = run(data, tmp_path, "resumed", **recipe)
    finally:
        torch.use_deterministic_algorithms(False)
    assert logged[0][1] > 4, "the second run must continue from step 4, not start over"
    assert [r["step"] for r in rows if r["train_loss"] != ""] == [2, 4, 6, 8], "the curve before the crash is kept"
    a, b = load_model(full_out).state_dict(), load_model(resumed_out).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)


def test_changed_params_do_not_resume_a_foreign_checkpoint(data, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run(data, tmp_path, "x", callbacks=[Crash(at=4)])
    _, _, logged, _ = run(data, tmp_path, "x", lr=5e-4)
    assert logged[0][1] == 2, "a checkpoint written with other params must not be resumed"


class PoisonWeights(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 5:
            with torch.no_grad():
                pl_module.model.wte.weight.fill_(float("nan"))


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(data, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="at step 5"):
        run(data, tmp_path, "nan", callbacks=[PoisonWeights()])
    state = torch.load(tmp_path / "nan-ckpt" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_lr_schedule() -> None:
    kwargs = {"lr": 1.0, "min_lr": 0.1, "warmup": 10, "total": 110}
    assert lr_at(0, **kwargs) == pytest.approx(0.1)
    assert lr_at(9, **kwargs) == pytest.approx(1.0)
    assert lr_at(60, **kwargs) == pytest.approx(0.55)
    assert lr_at(110, **kwargs) == pytest.approx(0.1) == lr_at(500, **kwargs)


DDP_SCRIPT = """
import json, sys
from pathlib import Path
from scratchlm.config.training import PretrainParams
from scratchlm.training.pretrain import pretrain

if __name__ == "__main__":
    tokens, tok, out, ckpt = map(Path, sys.argv[1:5])
    metrics, _ = pretrain(tokens, tok, out, ckpt, PretrainParams(**json.loads(sys.argv[5])))
    print("METRICS", json.dumps(metrics), flush=True)
"""


@pytest.mark.timeout(300)
def test_two_process_ddp_on_cpu(data, tmp_path: Path) -> None:
    """Lightning's own launcher starts the second process (gloo); rank 0 alone exports."""
    import json
    import subprocess
    import sys

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    params = {**TINY, "strategy": "ddp", "devices": 2, "max_steps": 4, "val_every": 2, "ckpt_every": 2}
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run([sys.executable, str(script), *map(str, data), str(out), str(tmp_path / "ckpt"),
                             json.dumps(params)], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.split("METRICS ", 1)[1].splitlines()[0])
    assert metrics["steps"] == 4
    assert metrics["tokens_seen"] == 4 * TINY["batch_size"] * 32 * 2, "two ranks, each its own batch"
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    assert load_model(out).config.n_layer == 2
