"""Instruction fine-tuning: masking, template, length batching, and a real tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section
from scratchlm.config.training import ALPACA, FinetuneInstructParams
from scratchlm.io import DataFormatError, write_jsonl
from scratchlm.model.gpt import GPT, GPTConfig, save_model
from scratchlm.prompts import IGNORE, collate, encode_example, format_prompt
from scratchlm.tokenizer import train_bpe
from scratchlm.training.instruct import LengthBatches, finetune_instruct

PAIRS = [("What is two plus two?", "Four."), ("Say hello.", "Hello!"), ("Name a colour.", "Blue."),
         ("What is the capital of France?", "Paris.")]


def records(n: int = 80) -> list[dict]:
    """Four questions, each asked about 20 numbered items (the stage drops exact duplicates)."""
    return [{"id": f"qa/{i:04d}", "instruction": f"{PAIRS[i % 4][0]} Item {i // 4}.", "input": "",
             "output": PAIRS[i % 4][1], "category": "t"} for i in range(n)]


def test_template_round_trips_and_input_block_is_optional() -> None:
    plain = format_prompt(ALPACA, "\n\n### Input:\n{input}", "Add the numbers.")
    assert plain.endswith("### Instruction:\nAdd the numbers.\n\n### Response:\n") and "### Input" not in plain
    with_input = format_prompt(ALPACA, "\n\n### Input:\n{input}", "Add the numbers.", "2 and 3")
    assert "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n" in with_input


def test_loss_is_only_on_response_tokens() -> None:
    encode = lambda text: [ord(c) for c in text]  # noqa: E731 - a one-character-per-token stand-in
    ids, labels = encode_example("Q: hi\nA:", " yo", encode, eot=0, max_length=64)
    assert ids == [*encode("Q: hi\nA:"), *encode(" yo"), 0]
    assert labels == [IGNORE] * 8 + [*encode(" yo"), 0]
    inputs, targets = collate([(ids, labels), (ids[:4], labels[:4])], pad_id=1)
    assert inputs.shape == targets.shape == (2, len(ids) - 1)
    assert (targets[1] == IGNORE).all(), "a prompt-only, padded example contributes no loss"
    assert targets[0].tolist()[-4:] == [*encode(" yo"), 0]


def test_length_batches_group_similar_lengths_and_are_seeded() -> None:
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    batches = list(LengthBatches(lengths, batch_size=2, seed=0))
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) <= 2 for a, b in batches)
    assert batches == list(LengthBatches(lengths, batch_size=2, seed=0))


def test_length_batches_order_is_a_function_of_seed_and_epoch_only() -> None:
    lengths = list(range(5, 69))
    sampler = LengthBatches(lengths, batch_size=4, seed=3)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0, "iterating again without set_epoch repeats the order: no hidden counter"
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == epoch0 and len({str(o) for o in orders}) == 4, "each epoch has its own order"
    fresh = LengthBatches(lengths, batch_size=4, seed=3)
    fresh.set_epoch(2)
    assert list(fresh) == orders[2], "epoch 2 draws the same batches whatever ran before (a resumed process)"
    other_seed = LengthBatches(lengths, batch_size=4, seed=4)
    other_seed.set_epoch(2)
    assert list(other_seed) != orders[2]
    val = LengthBatches(lengths, batch_size=4, seed=3, shuffle=False)
    val.set_epoch(5)
    assert [i for b in val for i in b] == list(range(64)), "no shuffle: the epoch changes nothing"


def test_lightning_sets_the_epoch_of_length_batches() -> None:
    """Lightning sets epochs on `loader.sampler` and `loader.batch_sampler.sampler`, not on the batch sampler."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    batches = LengthBatches([3, 4, 5, 6], batch_size=2, seed=0)
    loader = DataLoader(list(range(4)), batch_sampler=batches)
    _set_sampler_epoch(loader, 7)
    assert batches.epoch == 7


def test_length_batches_draw_the_order_at_the_first_batch() -> None:
    """A resumed Lightning run makes the loader's iterator before it sets the epoch."""
    lengths = list(range(5, 69))
    expected = LengthBatches(lengths, batch_size=4, seed=3)
    expected.set_epoch(2)
    batches = LengthBatches(lengths, batch_size=4, seed=3)
    iterator = iter(batches)
    batches.set_epoch(2)
    assert list(iterator) == list(expected)


def test_bad_template_and_split_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="prompt_template must contain"):
        parse_section("finetune_instruct", {"prompt_template": "{instruction} only"})
    with pytest.raises(ConfigError, match="split ratios must be > 0 and sum to 1"):
        parse_section("finetune_instruct", {"split": {"train": 0.5, "val": 0.1, "test": 0.1}})


@pytest.mark.slow
def test_tiny_model_learns_answers_and_stops(tmp_path: Path) -> None:
    texts = [format_prompt(ALPACA, "\n\n### Input:\n{input}", r["instruction"]) + r["output"] for r in records()]
    tokenizer = train_bpe(texts, 400, 1, ["<|endoftext|>", "<|pad|>"])
    pretrained = tmp_path / "pre"
    pretrained.mkdir()
    tokenizer.save(str(pretrained / "tokenizer.json"))
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=64, n_layer=2, n_head=2,
                             n_embd=64)), pretrained)
    write_jsonl(tmp_path / "data.jsonl", records())
    out = tmp_path / "out"
    out.mkdir()
    params = FinetuneInstructParams(epochs=12, batch_size=8, lr=3e-3, warmup_steps=2, max_length=64,
                                    max_new_tokens=8, precision="32-true", accelerator="cpu", num_threads=1,
                                    split={"train": 0.8, "val": 0.1, "test": 0.1}, eval_items=8)
    metrics = finetune_instruct([tmp_path / "data.jsonl"], pretrained, out, tmp_path / "ckpt", params)
    assert metrics["exact_match"] == 1.0 and metrics["rouge_l"] == 1.0
    assert metrics["dropped_too_long"] == {"train": 0, "val": 0, "test": 0}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(s["generated"] == s["reference"] for s in samples)
    assert json.loads((out / "template.json").read_text())["prompt_template"] == ALPACA
    from typer.testing import CliRunner

    from scratchlm.cli import app

    one_shot = CliRunner().invoke(app, ["chat", "--model", str(out), "--prompt", "Say hello. Item 3."])
    assert one_shot.exit_code == 0 and one_shot.output.strip() == "Hello!"
    session = CliRunner().invoke(app, ["chat", "--model", str(out)], input="Name a colour. Item 7.\n\n")
    assert "Blue." in session.output


def test_empty_output_names_the_record(tmp_path: Path) -> None:
    bad = records(5)
    bad[3]["output"] = " "
    write_jsonl(tmp_path / "data.jsonl", bad)
    with pytest.raises(DataFormatError, match=r"record 4 \(qa/0003\): missing or empty 'output'"):
        finetune_instruct([tmp_path / "data.jsonl"], tmp_path, tmp_path, tmp_path / "ckpt", FinetuneInstructParams())


@pytest.mark.slow
def test_examples_without_room_for_a_response_are_dropped_not_nan(tmp_path: Path) -> None:
    tokenizer = train_bpe([format_prompt(ALPACA, "", q) + a for q, a in PAIRS] * 20, 400, 1,
                          ["<|endoftext|>", "<|pad|>"])
    pretrained = tmp_path / "pre"
    pretrained.mkdir()
    tokenizer.save(str(pretrained / "tokenizer.json"))
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=64, n_layer=1, n_head=1,
                             n_embd=16)), pretrained)
    data = records(40)
    for r in data[::2]:
        r["instruction"] = f"a very long instruction {r['id']} " * 20  # fills max_length before the response
    write_jsonl(tmp_path / "data.jsonl", data)
    out = tmp_path / "out"
    out.mkdir()
    params = FinetuneInstructParams(epochs=1, batch_size=4, max_length=64, max_new_tokens=4, precision="32-true",
                                    accelerator="cpu", num_threads=1, eval_items=2,
                                    split={"train": 0.6, "val": 0.2, "test": 0.2})
    metrics = finetune_instruct([tmp_path / "data.jsonl"], pretrained, out, tmp_path / "ckpt", params)
    assert sum(metrics["dropped_too_long"].values()) == 20 and metrics["cleaning"]["duplicates_removed"] == 0
    assert metrics["val_loss"] == metrics["val_loss"], "finite, not NaN"
