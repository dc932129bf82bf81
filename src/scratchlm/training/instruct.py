"""Instruction fine-tuning: Alpaca-style prompts, loss on the response only, generation scored by ROUGE-L.

Each example is `prompt + response + <|endoftext|>`; the labels are -100 over the prompt (and the
padding), so the model learns to answer, not to repeat questions, and learns to stop: the end token
closes every response. Batches group examples of similar length and pad only to the longest of
the batch. The skeleton is the pretraining LightningModule's.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from scratchlm.io import DataFormatError
from scratchlm.training.module import GPTModule

IGNORE = -100


def format_prompt(template: str, input_template: str, instruction: str, input_text: str = "") -> str:
    """The prompt for one record; `input_template` (with `{input}`) is added only when there is an input."""
    input_block = input_template.format(input=input_text) if input_text.strip() else ""
    return template.format(instruction=instruction, input_block=input_block)


def check_records(records: Sequence[dict[str, Any]], source: str) -> None:
    for index, record in enumerate(records, start=1):
        for field in ("instruction", "output"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise DataFormatError(f"{source}: record {index} ({record.get('id')}): missing or empty '{field}'")


def split_by_hash(records: Sequence[dict[str, Any]], ratios: dict[str, float], seed: int
                  ) -> dict[str, list[dict[str, Any]]]:
    """Seeded, order-independent split: each record's bucket is a hash of (seed, id)."""
    bounds, total = [], 0.0
    for name, ratio in ratios.items():
        total += ratio
        bounds.append((total, name))
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in ratios}
    for record in sorted(records, key=lambda r: r["id"]):
        digest = hashlib.sha256(f"{seed}:{record['id']}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        parts[next((name for bound, name in bounds if u < bound), bounds[-1][1])].append(record)
    return parts


def encode_example(prompt: str, response: str, encode: Callable[[str], list[int]], eot: int,
                   max_length: int) -> tuple[list[int], list[int]]:
    """(ids, labels) with labels = IGNORE over the prompt; truncated to max_length tokens."""
    prompt_ids, response_ids = encode(prompt), [*encode(response), eot]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return ids, labels


class InstructDataset(Dataset):
    def __init__(self, examples: list[tuple[list[int], list[int]]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.examples[i]


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest example of the batch; inputs are ids[:-1], targets labels[1:]."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
    return ids[:, :-1], labels[:, 1:]


class LengthBatches(Sampler[list[int]]):
    """Batches of similar length (sorted within windows of 50 batches), in a seeded order per epoch.

    The order is a function of (seed, epoch) alone, set by `set_epoch`, so a run resumed at an epoch
    boundary draws the same batches as one that never stopped (a counter of calls would restart at 0).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.shuffle = list(lengths), batch_size, seed, shuffle
        self.epoch = 0

    @property
    def sampler(self) -> LengthBatches:
        """Lightning calls `set_epoch` on `loader.sampler` and `loader.batch_sampler.sampler`, never on the
        batch sampler itself (`lightning.fabric.utilities.data._set_sampler_epoch`): this batch sampler
        draws its own indices, so it is that sampler."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch (the epoch count is restored on resume)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        """A generator, so the order is drawn at the first batch, not when the iterator is made: a resumed
        Lightning run makes it before calling `set_epoch` (torch's BatchSampler is lazy the same way)."""
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        window = self.batch_size * 50
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class InstructModule(GPTModule):
    """Next-token loss where labels are not IGNORE (the response and its end token); logs train loss."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.checked(self.compute_loss(batch))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].size(0))
        return loss


def rouge_l(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, with stemming, as the Alpaca/LLM-from-scratch evals use)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for ref, pred in zip(references, predictions, strict=True)]
    return sum(scores) / max(1, len(scores))


def exact_match(references: Sequence[str], predictions: Sequence[str]) -> float:
    same = sum(ref.strip().lower() == pred.strip().lower() for ref, pred in zip(references, predictions, strict=True))
    return same / max(1, len(references))
