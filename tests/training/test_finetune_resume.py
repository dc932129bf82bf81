"""Fine-tune resume: interrupted and resumed runs end where uninterrupted ones do; foreign checkpoints are not resumed.

Real Lightning training of tiny models (fp32, no compile, one thread), so weights compare to 1e-6.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from scratchlm.config.training import AlignParams, FinetuneClassifierParams, FinetuneInstructParams
from scratchlm.io import write_jsonl
from scratchlm.model.gpt import GPT, GPTConfig, save_model
from scratchlm.prompts import format_prompt
from scratchlm.tokenizer import train_bpe
from scratchlm.training.align import align
from scratchlm.training.checkpoint import FINGERPRINT, LAST
from scratchlm.training.classifier import finetune_classifier
from scratchlm.training.finetune import finetune_fingerprint as fingerprint
from scratchlm.training.instruct import finetune_instruct

pytestmark = pytest.mark.slow
PAIRS = [("What is two plus two?", "Four."), ("Say hello.", "Hello!"), ("Name a colour.", "Blue."),
         ("What is the capital of France?", "Paris.")]
HAM = ["see", "you", "at", "lunch", "tomorrow", "call", "me", "when", "home", "ok"]
SPAM = ["win", "free", "cash", "prize", "now", "claim", "urgent", "reward", "text", "stop"]
TEMPLATE = "Q: {instruction}{input_block}\nA: "
EPOCHS, STOP_AT = 3, 2  # runs are interrupted as epoch 2 starts, after epoch 1's checkpoint


def pretrained(root: Path, texts: list[str]) -> Path:
    """A tiny GPT with dropout (so the resumed RNG state matters) and its tokenizer."""
    tokenizer = train_bpe(texts, 300, 1, ["<|endoftext|>", "<|pad|>"])
    root.mkdir(parents=True)
    tokenizer.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=48, n_layer=1, n_head=2, n_embd=32,
                             dropout=0.1)), root)
    return root


@pytest.fixture(scope="module")
def instruct_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("instruct")
    # every example distinct, so a batch order that differs cannot go unnoticed by the weights
    records = [{"id": f"qa/{i:03d}", "instruction": f"{PAIRS[i % 4][0]} {'please ' * (i % 3)}#{i}", "input": "",
                "output": PAIRS[i % 4][1]} for i in range(40)]
    write_jsonl(root / "data.jsonl", records)
    texts = [format_prompt(TEMPLATE, "", r["instruction"]) + r["output"] for r in records]
    return [root / "data.jsonl"], pretrained(root / "pre", texts)


@pytest.fixture(scope="module")
def classifier_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("classifier")
    records = []
    for i in range(80):
        words = SPAM if i % 4 == 0 else HAM
        records.append({"id": f"sms/{i:03d}", "text": " ".join(words[(i + k) % len(words)] for k in range(6)),
                        "label": "spam" if i % 4 == 0 else "ham"})
    write_jsonl(root / "data.jsonl", records)
    return [root / "data.jsonl"], pretrained(root / "pre", [r["text"] for r in records])


def instruct_params(**overrides: Any) -> FinetuneInstructParams:
    base = {"epochs": EPOCHS, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "max_length": 32, "max_new_tokens": 4,
            "prompt_template": TEMPLATE,
            "precision": "32-true", "accelerator": "cpu", "num_threads": 1, "eval_items": 2,
            "split": {"train": 0.8, "val": 0.1, "test": 0.1}}
    return FinetuneInstructParams(**{**base, **overrides})


def classifier_params(**overrides: Any) -> FinetuneClassifierParams:
    base = {"epochs": EPOCHS, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "max_length": 16,
            "precision": "32-true", "accelerator": "cpu", "num_threads": 1,
            "split": {"train": 0.6, "val": 0.2, "test": 0.2}}
    return FinetuneClassifierParams(**{**base, **overrides})


class StopAtEpoch(L.Callback):
    """Raises `error` as epoch `at` starts: the process dies between two epochs."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at, self.error = at, error

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.at:
            raise self.error


def run(stage: Any, inputs: tuple[Path, Path], tmp: Path, name: str, params: Any,
        callbacks: list[L.Callback] | None = None) -> tuple[dict[str, Any], list[tuple[dict, int]], Path]:
    """One stage run into `tmp/name` with checkpoints in `tmp/name-ckpt`; returns (metrics, logged, out)."""
    out = tmp / name
    out.mkdir(exist_ok=True)
    logged: list[tuple[dict, int]] = []
    metrics = stage(*inputs, out, tmp / f"{name}-ckpt", params, lambda m, e: logged.append((m, e)), callbacks)
    return metrics, logged, out


def history(ckpt_dir: Path) -> list[dict[str, float]]:
    """The epoch log stored in `last.ckpt` (loaded as the stage loads it: weights only)."""
    return torch.load(ckpt_dir / LAST, weights_only=True)["callbacks"]["EpochLog"]["history"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def instruct_reference(instruct_inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                       ) -> tuple[dict[str, Any], list[tuple[dict, int]], Path]:
    """The uninterrupted run every interrupted one is compared with."""
    return run(finetune_instruct, instruct_inputs, tmp_path_factory.mktemp("reference"), "full", instruct_params())


def test_instruct_resumed_after_a_crash_matches_an_uninterrupted_run(instruct_inputs, instruct_reference,
                                                                     tmp_path: Path) -> None:
    full, full_logged, full_out = instruct_reference
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(finetune_instruct, instruct_inputs, tmp_path, "resumed", instruct_params(),
            [StopAtEpoch(STOP_AT, RuntimeError("simulated crash"))])
    assert [h["epoch"] for h in history(tmp_path / "resumed-ckpt")] == list(range(STOP_AT))
    resumed, logged, out = run(finetune_instruct, instruct_inputs, tmp_path, "resumed", instruct_params())
    assert [e for _, e in logged] == list(range(STOP_AT, EPOCHS)), "the second run continues, it does not restart"
    assert_same_weights(full_out, out)
    assert history(tmp_path / "resumed-ckpt") == history(full_out.parent / "full-ckpt")
    assert logged == full_logged[STOP_AT:]
    assert resumed == full


def ctrl_c(stage: Any, inputs: tuple[Path, Path], tmp: Path, name: str, params: Any, at: L.Callback) -> None:
    """A run stopped by KeyboardInterrupt: Lightning stops gracefully, exits with status 1, and ignores
    further Ctrl-C, so the test's own handler is put back."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            run(stage, inputs, tmp, name, params, [at])
    finally:
        signal.signal(signal.SIGINT, handler)


def test_instruct_ctrl_c_between_epochs_resumes_exactly(instruct_inputs, instruct_reference, tmp_path: Path) -> None:
    _, full_logged, full_out = instruct_reference
    ctrl_c(finetune_instruct, instruct_inputs, tmp_path, "ctrl-c", instruct_params(),
           StopAtEpoch(STOP_AT, KeyboardInterrupt()))
    state = torch.load(tmp_path / "ctrl-c-ckpt" / LAST, weights_only=True)
    assert state["epoch"] == STOP_AT - 1, "between epochs the finished epoch's checkpoint is kept, not overwritten"
    _, logged, out = run(finetune_instruct, instruct_inputs, tmp_path, "ctrl-c", instruct_params())
    assert logged == full_logged[STOP_AT:], "the next epoch runs (a checkpoint taken here would skip it)"
    assert_same_weights(full_out, out)
    assert history(tmp_path / "ctrl-c-ckpt") == history(full_out.parent / "full-ckpt")


class StopAtStep(L.Callback):
    """Ctrl-C as optimizer step `at + 1` starts, in the middle of an epoch."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


def test_instruct_ctrl_c_mid_epoch_keeps_the_steps_done(instruct_inputs, instruct_reference, tmp_path: Path) -> None:
    steps = torch.load(instruct_reference[2].parent / "full-ckpt" / LAST, weights_only=True)["global_step"]
    at = steps // EPOCHS + 2  # two steps into the second epoch
    ctrl_c(finetune_instruct, instruct_inputs, tmp_path, "mid", instruct_params(), StopAtStep(at))
    assert torch.load(tmp_path / "mid-ckpt" / LAST, weights_only=True)["global_step"] == at
    _, logged, _ = run(finetune_instruct, instruct_inputs, tmp_path, "mid", instruct_params())
    assert [e for _, e in logged] == list(range(1, EPOCHS)), "continues inside epoch 1, not from scratch"
    state = torch.load(tmp_path / "mid-ckpt" / LAST, weights_only=True)
    assert state["global_step"] == steps and [h["epoch"] for h in history(tmp_path / "mid-ckpt")] == [0, 1, 2]


def align_params() -> AlignParams:
    return AlignParams(epochs=EPOCHS, batch_size=4, lr=3e-3, warmup_steps=2, max_length=32, max_new_tokens=4,
                       precision="32-true", accelerator="cpu", num_threads=1)


def test_align_resumed_after_a_crash_matches_an_uninterrupted_run(instruct_inputs, instruct_reference,
                                                                  tmp_path: Path) -> None:
    """DPO from the instruction model (dropout on, pairs sampled from it) resumes as the other fine-tunes do."""
    inputs = (instruct_inputs[0], [], instruct_reference[2])
    full, full_logged, full_out = run(align, inputs, tmp_path, "full", align_params())
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(align, inputs, tmp_path, "resumed", align_params(), [StopAtEpoch(STOP_AT, RuntimeError("simulated crash"))])
    resumed, logged, out = run(align, inputs, tmp_path, "resumed", align_params())
    assert [e for _, e in logged] == list(range(STOP_AT, EPOCHS)), "the second run continues, it does not restart"
    assert_same_weights(full_out, out)
    assert (out / "pairs.jsonl").read_bytes() == (full_out / "pairs.jsonl").read_bytes()
    assert resumed == full


def test_a_checkpoint_written_with_other_params_is_not_resumed(instruct_inputs, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run(finetune_instruct, instruct_inputs, tmp_path, "x", instruct_params(epochs=2),
            [StopAtEpoch(1, RuntimeError("stop"))])
    assert (tmp_path / "x-ckpt" / LAST).is_file()
    changed = instruct_params(epochs=2, lr=1e-3)
    _, logged, _ = run(finetune_instruct, instruct_inputs, tmp_path, "x", changed)
    assert [e for _, e in logged] == [0, 1], "a checkpoint of other params must not be resumed"
    marker = json.loads((tmp_path / "x-ckpt" / FINGERPRINT).read_text())
    assert marker["sha256"] == fingerprint(changed, *instruct_inputs)


def test_fingerprint_follows_params_data_and_pretrained_model(instruct_inputs, tmp_path: Path) -> None:
    data, pre = instruct_inputs
    base = fingerprint(instruct_params(), data, pre)
    assert base == fingerprint(instruct_params(), data, pre)
    assert base != fingerprint(instruct_params(seed=1), data, pre)
    copy = tmp_path / "data.jsonl"
    copy.write_bytes(data[0].read_bytes() + b"\n")
    assert base != fingerprint(instruct_params(), [copy], pre)
    other = tmp_path / "pre"
    other.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        (other / name).write_bytes((pre / name).read_bytes())
    assert base == fingerprint(instruct_params(), data, other)
    (other / "config.json").write_text((pre / "config.json").read_text() + " ")
    assert base != fingerprint(instruct_params(), data, other)


def test_classifier_resumed_after_a_crash_keeps_its_best_epoch_and_history(classifier_inputs, tmp_path: Path) -> None:
    full, _, full_out = run(finetune_classifier, classifier_inputs, tmp_path, "full", classifier_params())
    assert full["best_epoch"] < STOP_AT, "the best epoch must precede the crash for this test to mean anything"
    with pytest.raises(RuntimeError, match="crash"):
        run(finetune_classifier, classifier_inputs, tmp_path, "resumed", classifier_params(),
            [StopAtEpoch(STOP_AT, RuntimeError("crash"))])
    resumed, logged, out = run(finetune_classifier, classifier_inputs, tmp_path, "resumed", classifier_params())
    assert [e for _, e in logged] == list(range(STOP_AT, EPOCHS))
    assert resumed == full, "same test metrics, best epoch and per-epoch history"
    assert [h["epoch"] for h in resumed["epochs"]] == list(range(EPOCHS))
    assert_same_weights(full_out, out)
    best = [p.name for p in (tmp_path / "resumed-ckpt").glob("epoch=*.ckpt")]
    assert best == [f"epoch={full['best_epoch']}-step={(full['best_epoch'] + 1) * 6}.ckpt"]
