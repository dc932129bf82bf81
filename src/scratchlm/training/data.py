"""Data for pretraining: random windows over a split's memory-mapped token shards (`scratchlm.tokens`).

Training windows are drawn by sample index: window `i` starts at an offset drawn from a generator
seeded with `(seed, i)`. The data module remembers how many samples were consumed and saves that
in the checkpoint, so a resumed run continues with exactly the windows an uninterrupted run would
have seen next, and no corpus is ever held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from scratchlm.io import DataFormatError
from scratchlm.tokens import read_tokens


def window_offset(seed: int, index: int, n_tokens: int, window: int) -> int:
    """Start of training window `index`: a pure function of (seed, index)."""
    return int(np.random.default_rng((seed, index)).integers(0, n_tokens - window + 1))


def as_pair(chunk: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) from a window of block_size + 1 tokens."""
    tokens = torch.from_numpy(chunk.astype(np.int64))
    return tokens[:-1], tokens[1:]


class RandomWindows(IterableDataset):
    """An endless stream of training windows, starting at sample `start` (for exact resume).

    Under data parallelism (one node or several) rank r of W takes samples start + r, start + r + W, …:
    ranks never overlap, and the k-th micro-batches of batch B of all ranks together are exactly samples
    start + kWB … start + (k+1)WB - 1, the k-th micro-batch of one process with batch W·B. As DDP averages
    the ranks' gradients, W ranks train like that one process (the order inside a batch does not change
    its mean loss), and `start` counts samples of all ranks, so a run resumes on another W with the same
    W·B. With W = 1 the stream is start, start + 1, … as it always was.
    """

    def __init__(self, path: Path, block_size: int, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.path, self.block_size, self.seed = path, block_size, seed
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens = read_tokens(self.path)
        window = self.block_size + 1
        if len(tokens) < window:
            raise DataFormatError(f"{self.path}: {len(tokens)} tokens, fewer than one window of {window}")
        index = self.start + self.rank
        while True:
            offset = window_offset(self.seed, index, len(tokens), window)
            yield as_pair(np.asarray(tokens[offset : offset + window]))
            index += self.world_size


class FixedWindows(Dataset):
    """The same evenly spaced validation windows every time, so val loss is comparable across steps."""

    def __init__(self, path: Path, block_size: int, count: int) -> None:
        self.tokens = read_tokens(path)
        self.window = block_size + 1
        if len(self.tokens) < self.window:
            raise DataFormatError(f"{path}: {len(self.tokens)} tokens, fewer than one window of {self.window}")
        available = len(self.tokens) // self.window
        self.starts = np.linspace(0, (available - 1) * self.window, num=min(count, available)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(self.starts[index])
        return as_pair(np.asarray(self.tokens[start : start + self.window]))


def own_generator(seed: int) -> torch.Generator:
    """A loader's private RNG. Without one, every `iter(loader)` draws a base seed from the global
    torch RNG, so a resumed run (whose checkpoint restored that RNG) would see other dropout masks."""
    return torch.Generator().manual_seed(seed)


class TokenDataModule(L.LightningDataModule):
    """Train/val loaders over the `train` and `val` token splits; checkpoints the number of samples consumed."""

    def __init__(self, tokens_dir: Path, block_size: int, batch_size: int, grad_accum: int, seed: int,
                 val_windows: int) -> None:
        super().__init__()
        self.tokens_dir, self.block_size, self.batch_size = tokens_dir, block_size, batch_size
        self.grad_accum, self.seed, self.val_windows = grad_accum, seed, val_windows
        self.start_sample = 0

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        dataset = RandomWindows(self.tokens_dir / "train.json", self.block_size, self.seed,
                                start=self.start_sample, rank=rank, world_size=world)
        # workers gain nothing: a batch is a memmap slice, microseconds against a training step
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=0, generator=own_generator(self.seed),
                          pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        dataset = FixedWindows(self.tokens_dir / "val.json", self.block_size, self.val_windows)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=0,
                          generator=own_generator(self.seed), pin_memory=self.pin_memory)

    @property
    def pin_memory(self) -> bool:
        """Page-locked batches let a GPU copy overlap compute; on CPU they would only cost a copy."""
        return bool(self.trainer and self.trainer.strategy.root_device.type == "cuda")

    def state_dict(self) -> dict[str, Any]:
        """Samples consumed so far (all ranks): where the stream resumes."""
        step = self.trainer.global_step if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        return {"consumed_samples": step * self.grad_accum * self.batch_size * world}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_sample = int(state["consumed_samples"])


def unigram_loss(train: Path, val: Path, vocab_size: int, chunk: int = 1 << 24) -> float:
    """Cross-entropy (nats/token) on val of add-one token frequencies from train: the baseline a
    language model must beat. Counted in chunks, so it runs in bounded memory on any corpus size."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for piece in read_tokens(train).chunks(chunk):
        counts += np.bincount(piece, minlength=vocab_size)[:vocab_size]
    log_p = np.log(counts / counts.sum())
    held_out = read_tokens(val)
    total = sum(float(log_p[piece].sum()) for piece in held_out.chunks(chunk))
    return -total / max(1, len(held_out))
