"""Log-likelihoods the lm-evaluation-harness way, batched: the one primitive every benchmark here needs.

A request is a (context, continuation) pair of strings. As the harness does, trailing whitespace of
the context moves to the continuation, and the continuation's tokens are those of
`encode(context + continuation)` past `encode(context)`, so a BPE merge across the boundary is scored
as the model would see it. Requests are sorted by length and scored a batch at a time with right
padding: with causal attention a padded position never changes the positions before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from scratchlm.model.gpt import GPT

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class Scored:
    """The sum of the continuation's token log-probabilities, and whether greedy decoding gives it."""

    loglik: float
    is_greedy: bool
    tokens: int


def encode_pair(encode: Encode, context: str, continuation: str, bos: int) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids); an empty context becomes the `bos` (end-of-text) token."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    whole = encode(stripped + continuation)
    context_ids = encode(stripped) if stripped else []
    if whole[: len(context_ids)] != context_ids:  # a merge across the boundary: fall back to separate encodes
        whole = context_ids + encode(continuation)
    return (context_ids or [bos]), whole[len(context_ids):]


def _batches(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield list(order[start : start + size])


@torch.no_grad()
def score_requests(model: GPT, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 32,
                   desc: str = "loglikelihood", progress: bool = True) -> list[Scored]:
    """Score every (context ids, continuation ids) pair; contexts are cut on the left to fit block_size."""
    block = model.config.block_size
    windows = [(ctx + cont)[-(block + 1):] for ctx, cont in pairs]
    # with no context the first token has nothing to predict it, and goes unscored
    n_cont = [min(len(cont), len(w) - 1) for (_, cont), w in zip(pairs, windows, strict=True)]
    order = sorted(range(len(pairs)), key=lambda i: -len(windows[i]))  # longest first: padding stays small
    results: list[Scored | None] = [None] * len(pairs)
    device = next(model.parameters()).device
    model.eval()
    with tqdm(total=len(pairs), desc=desc, unit="req", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            width = max(1, max(len(windows[i]) for i in batch) - 1)
            inputs = torch.zeros(len(batch), width, dtype=torch.long)
            for row, i in enumerate(batch):
                inputs[row, : len(windows[i]) - 1] = torch.tensor(windows[i][:-1])
            logprobs = F.log_softmax(model(inputs.to(device))[0].float(), dim=-1).cpu()
            for row, i in enumerate(batch):
                results[i] = _continuation_score(logprobs[row], windows[i], n_cont[i])
            bar.update(len(batch))
    return [r for r in results if r is not None]


def _continuation_score(logprobs: torch.Tensor, window: list[int], n_cont: int) -> Scored:
    """Positions len-1-n_cont … len-2 of the input predict the continuation's n_cont tokens."""
    if n_cont <= 0:
        return Scored(0.0, True, 0)
    end = len(window) - 1
    rows = logprobs[end - n_cont : end]
    target = torch.tensor(window[-n_cont:])
    picked = rows.gather(1, target[:, None]).squeeze(1)
    return Scored(float(picked.sum()), bool((rows.argmax(-1) == target).all()), n_cont)


def rolling_windows(ids: Sequence[int], block: int, stride: int) -> Iterator[tuple[list[int], int]]:
    """(window, scored) pairs covering `ids`: every token after the first is predicted exactly once.

    A window holds up to block + 1 tokens (inputs and their shifted targets); its last `scored`
    targets are new, the rest is context carried over, so each scored token sees at least
    `block - stride` tokens of context once the text is longer than one window.
    """
    end, done = min(block + 1, len(ids)), 1
    while done < len(ids):
        yield list(ids[max(0, end - block - 1) : end]), end - done
        done, end = end, min(end + stride, len(ids))


@torch.no_grad()
def sum_nll(model: GPT, windows: Sequence[tuple[list[int], int]], batch_size: int = 16,
            desc: str = "perplexity", progress: bool = True) -> tuple[float, int]:
    """(total negative log-likelihood in nats, tokens scored) over rolling windows."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
    with tqdm(total=len(windows), desc=desc, unit="win", disable=not progress) as bar:
        for batch in _batches(order, batch_size):
            width = max(len(windows[i][0]) for i in batch) - 1
            inputs = torch.zeros(len(batch), width, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, i in enumerate(batch):
                window, scored = windows[i]
                inputs[row, : len(window) - 1] = torch.tensor(window[:-1])
                targets[row, len(window) - 1 - scored : len(window) - 1] = torch.tensor(window[-scored:])
                count += scored
            logits = model(inputs.to(device))[0].float()
            total += float(F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), ignore_index=-100,
                                           reduction="sum"))
            bar.update(len(batch))
    return total, count
