"""Broken or hostile weights and checkpoints, through the real stage scripts on a debug DAG copy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from dag_tools import fresh_tracking
from stage_cli import error_line, run_stage, stage_argv

from scratchlm.io import tree_sha256

pytestmark = pytest.mark.slow


def run(dag: Path, stage: str):
    return run_stage(dag, *stage_argv(stage, dag), env=fresh_tracking(dag))


def test_truncated_safetensors_is_refused_naming_the_file(dag: Path) -> None:
    weights = dag / "models" / "pretrain" / "model.safetensors"
    before = tree_sha256(dag / "models" / "classifier")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = error_line(run(dag, "finetune_classifier"))
    assert "models/pretrain/model.safetensors: unreadable weights" in line, line
    assert tree_sha256(dag / "models" / "classifier") == before  # the previous good output survives


def test_config_that_does_not_match_the_weights_is_refused(dag: Path) -> None:
    config = dag / "models" / "pretrain" / "config.json"
    values = json.loads(config.read_text())
    config.write_text(json.dumps({**values, "n_embd": values["n_embd"] * 2}))
    line = error_line(run(dag, "finetune_instruct"))
    assert "models/pretrain: config.json does not match the weights" in line, line


class Payload:
    """What a hostile checkpoint carries: unpickling it would run `os.system`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["pickled-object", "truncated"])
def test_resume_checkpoint_that_is_not_weights_only_is_refused(dag: Path, kind: str) -> None:
    """last.ckpt with a matching fingerprint, so the stage would resume from it: it must refuse instead."""
    ckpt = dag / "checkpoints" / "pretrain" / "last.ckpt"
    marker = dag / "PWNED"
    if kind == "pickled-object":
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        torch.save({**state, "hyper_parameters": Payload(marker)}, ckpt)
    else:
        ckpt.write_bytes(ckpt.read_bytes()[:4096])
    before = tree_sha256(dag / "models" / "pretrain")
    line = error_line(run(dag, "pretrain"))
    assert "checkpoints/pretrain/last.ckpt: refused to resume: not a weights-only checkpoint" in line, line
    assert "delete checkpoints/pretrain to train from scratch" in line
    assert not marker.exists()  # nothing was unpickled
    assert tree_sha256(dag / "models" / "pretrain") == before
    assert ckpt.exists()  # the user's file is left for them to inspect
