"""Answers of a trained GPT to prompts: greedy by default, or sampled with a temperature."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer

from scratchlm.model.gpt import GPT
from scratchlm.tokenizer import EOT


def generate_answers(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int,
                     temperature: float = 0.0, top_k: int | None = None, generator: torch.Generator | None = None,
                     batch_size: int = 32) -> list[str]:
    """Answers, each stopped by the end token (the model learned to emit it): greedy by default, sampled
    with a temperature (and the seeded `generator`, so the same seed gives the same answers).

    Prompts of the same token length are answered together, up to `batch_size` at a time (the model has no
    padding mask, so a batch is only ever prompts of one length): the same answers, several times faster.
    """
    eot = tokenizer.token_to_id(EOT)
    model.eval()
    limit = model.config.block_size - max_new_tokens
    encoded = [tokenizer.encode(prompt).ids[-max(1, limit):] for prompt in prompts]
    answers = [""] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    for length, same in itertools.groupby(order, key=lambda i: len(encoded[i])):
        rows = list(same)
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            out = model.generate(torch.tensor([encoded[i] for i in batch]), max_new_tokens, temperature=temperature,
                                 top_k=top_k, eos=eot, generator=generator)[:, length:].tolist()
            for row, ids in zip(batch, out, strict=True):
                answers[row] = tokenizer.decode(ids[: ids.index(eot)] if eot in ids else ids).strip()
    return answers
