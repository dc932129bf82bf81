"""Text generation from an exported model folder (model.safetensors + config.json + tokenizer.json)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer

from scratchlm.model.gpt import GPT, load_model
from scratchlm.tokenizer import EOT, load_tokenizer


def load_for_generation(model_dir: Path, device: str = "cpu") -> tuple[GPT, Tokenizer]:
    """The model in eval mode and its tokenizer; a folder missing either is a clear error."""
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir}: missing {name} (not an exported scratchlm model)")
    return load_model(model_dir, device).eval(), load_tokenizer(model_dir / "tokenizer.json")


def stream_text(model: GPT, tokenizer: Tokenizer, prompt: str, *, max_new_tokens: int = 100,
                temperature: float = 0.8, top_k: int | None = 50, top_p: float | None = None,
                seed: int | None = None) -> Iterator[str]:
    """Yield the continuation piece by piece as it is sampled; deterministic for a given seed.

    Text is decoded from all new ids so far and only the new suffix is yielded, so a character
    split across several byte tokens appears once it is complete.
    """
    ids = tokenizer.encode(prompt).ids or [tokenizer.token_to_id(EOT)]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    new_ids: list[int] = []
    shown = ""
    idx = torch.tensor([ids], dtype=torch.long)
    for next_id in model.stream(idx, max_new_tokens, temperature, top_k, top_p, tokenizer.token_to_id(EOT),
                                generator):
        token = int(next_id[0, 0])
        if token == tokenizer.token_to_id(EOT):
            return
        new_ids.append(token)
        text = tokenizer.decode(new_ids)
        if not text.endswith("\ufffd"):
            yield text[len(shown):]
            shown = text
