"""An instruction example: its Alpaca-style prompt, its (ids, labels) encoding, its padded batches.

Each example is `prompt + response + <|endoftext|>`; the labels are IGNORE over the prompt (and the
padding), so the loss counts the response and its end token only. The instruction fine-tune and the
aligned model train on these, and evaluation scores the fine-tunes' test splits prepared the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

IGNORE = -100


def format_prompt(template: str, input_template: str, instruction: str, input_text: str = "") -> str:
    """The prompt for one record; `input_template` (with `{input}`) is added only when there is an input."""
    input_block = input_template.format(input=input_text) if input_text.strip() else ""
    return template.format(instruction=instruction, input_block=input_block)


def encode_example(prompt: str, response: str, encode: Callable[[str], list[int]], eot: int,
                   max_length: int) -> tuple[list[int], list[int]]:
    """(ids, labels) with labels = IGNORE over the prompt; truncated to max_length tokens."""
    prompt_ids, response_ids = encode(prompt), [*encode(response), eot]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return ids, labels


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest example of the batch; inputs are ids[:-1], targets labels[1:]."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
    return ids[:, :-1], labels[:, 1:]
