"""Tiny model folders for tests: a random GPT in safetensors plus a tiny trained tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scratchlm.model.gpt import GPT, GPTConfig, save_model
from scratchlm.tokenizer import EOT, PAD, train_bpe

TEXTS = ["the cat sat on the mat and the dog ran to the park"] * 50 + ["ünïcödé 漢字 🤖"]
SAMPLE = "the dog sat on ünïcödé 漢字 🤖 mat<|endoftext|>the park"


def make_model_dir(root: Path, bias: bool = True, specials: tuple[str, ...] = (EOT, PAD),
                   architecture: str = "gpt2", **fields: Any) -> Path:
    """A tiny random model (non-zero biases, so a lost bias would show) and a tiny trained tokenizer."""
    tokenizer = train_bpe(TEXTS, 300, 1, list(specials))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=16, n_layer=2, n_head=2, n_embd=16,
                          dropout=0.1, bias=bias, architecture=architecture, **fields))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "ln" in name:
                param.add_(torch.randn_like(param) * 0.1)
    save_model(model, root)
    tokenizer.save(str(root / "tokenizer.json"))
    return root
