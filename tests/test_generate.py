from pathlib import Path

import torch
from typer.testing import CliRunner

from scratchlm.cli import app
from scratchlm.model.gpt import GPT, GPTConfig, save_model
from scratchlm.tokenizer import train_bpe


def make_model_dir(root: Path) -> Path:
    texts = ["the cat sat on the mat and the dog ran to the park"] * 50 + ["ünïcödé 漢字 🤖"]
    tokenizer = train_bpe(texts, 300, 1, ["<|endoftext|>", "<|pad|>"])
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=16, n_layer=1, n_head=2,
                             n_embd=16)), root)
    tokenizer.save(str(root / "tokenizer.json"))
    return root


def test_generate_is_seeded_and_streams_text(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    args = ["generate", "--model", str(model), "--prompt", "the cat", "--max-new-tokens", "30", "--seed", "3"]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output and first.output.startswith("the cat")
    other = CliRunner().invoke(app, [*args[:-1], "4"])
    assert other.output != first.output


def test_generate_from_a_folder_without_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--model", str(tmp_path), "--prompt", "x"])
    assert result.exit_code == 1 and "missing model.safetensors" in result.output
