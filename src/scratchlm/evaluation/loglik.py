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
    return _scored(logprobs[end - n_cont : end], window[-n_cont:])


def _scored(rows: torch.Tensor, target_ids: Sequence[int]) -> Scored:
    """Sum of the targets' log-probabilities in `rows` (one row per target), and whether each is the argmax."""
    target = torch.tensor(list(target_ids))
    picked = rows.gather(1, target[:, None]).squeeze(1)
    return Scored(float(picked.sum()), bool((rows.argmax(-1) == target).all()), len(target))


# ------------------------------------------------------------------ shared contexts, packed in one row

Group = tuple[list[int], list[list[int]]]  # (context ids, the continuation ids of each choice)


def pack_group(context: list[int], continuations: Sequence[list[int]]) -> tuple[list[int], list[int], list[int]]:
    """(tokens, positions, segments) of one packed row: the context (segment 0), then each continuation
    but its last token (segment i + 1), each positioned right after the context as if it were alone."""
    tokens, positions, segments = list(context), list(range(len(context))), [0] * len(context)
    for number, continuation in enumerate(continuations, 1):
        tokens += continuation[:-1]
        positions += range(len(context), len(context) + len(continuation) - 1)
        segments += [number] * (len(continuation) - 1)
    return tokens, positions, segments


def packed_mask(segments: torch.Tensor) -> torch.Tensor:
    """(batch, T, T), True where a query may attend a key: causally, within the context or its own
    continuation, never a sibling continuation. Padding (segment -1) attends to itself only."""
    index = torch.arange(segments.size(1))
    causal = index[None, :] <= index[:, None]
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    mask = causal & ((seg_k == 0) | (seg_k == seg_q)) & (seg_q >= 0)
    return mask | (torch.eye(segments.size(1), dtype=torch.bool) & (seg_q < 0))


def _group_batches(order: Sequence[int], groups: Sequence[Group], requests: int) -> Iterator[list[int]]:
    """Consecutive groups holding at most `requests` continuations together (at least one group)."""
    batch: list[int] = []
    for i in order:
        if batch and sum(len(groups[j][1]) for j in batch) + len(groups[i][1]) > requests:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _score_packed(model: GPT, groups: Sequence[Group], batch: list[int]) -> list[list[Scored]]:
    """One forward pass for a batch of packed rows; the LM head runs only where a target is predicted."""
    rows = [pack_group(*groups[i]) for i in batch]
    width = max(len(tokens) for tokens, _, _ in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for row, (ids, pos, seg) in enumerate(rows):
        tokens[row, : len(ids)], positions[row, : len(ids)], segments[row, : len(ids)] = (
            torch.tensor(ids), torch.tensor(pos), torch.tensor(seg))
    device = next(model.parameters()).device
    hidden = model.hidden_states(tokens.to(device), positions=positions.to(device),
                                 mask=packed_mask(segments).to(device))
    picks: list[tuple[int, int]] = []  # (row, position) of every prediction, in group/choice order
    for row, i in enumerate(batch):
        context, continuations = groups[i]
        seg = segments[row].tolist()
        for number, continuation in enumerate(continuations, 1):
            own = [t for t, s in enumerate(seg) if s == number]
            picks += [(row, t) for t in [len(context) - 1, *own][: len(continuation)]]
    picked = hidden[[r for r, _ in picks], [t for _, t in picks]] if picks else hidden[:0, 0]
    logprobs = F.log_softmax(model.lm_head(picked).float(), dim=-1).cpu()
    out, start = [], 0
    for i in batch:
        scored = []
        for continuation in groups[i][1]:
            scored.append(_scored(logprobs[start : start + len(continuation)], continuation) if continuation
                          else Scored(0.0, True, 0))
            start += len(continuation)
        out.append(scored)
    return out


@torch.no_grad()
def score_groups(model: GPT, groups: Sequence[Group], batch_size: int = 32, desc: str = "loglikelihood",
                 progress: bool = True) -> list[list[Scored]]:
    """Score each group's continuations after its shared context, the context run once per group.

    The same numbers as `score_requests` on the unpacked pairs: a packed continuation sees exactly the
    context and its own tokens, at the positions it would have alone. A group whose longest request
    does not fit the block (which `score_requests` cuts on the left) is scored the unpacked way.
    """
    block = model.config.block_size
    # the last position a group needs: its context, then its longest continuation but the last token
    fits = [len(ctx) - 1 + max([1, *map(len, conts)]) <= block for ctx, conts in groups]
    results: list[list[Scored] | None] = [None] * len(groups)
    model.eval()
    order = sorted((i for i in range(len(groups)) if fits[i]), key=lambda i: -len(pack_group(*groups[i])[0]))
    with tqdm(total=sum(len(g[1]) for g in groups), desc=desc, unit="req", disable=not progress) as bar:
        for batch in _group_batches(order, groups, batch_size):
            for i, scored in zip(batch, _score_packed(model, groups, batch), strict=True):
                results[i] = scored
            bar.update(sum(len(groups[i][1]) for i in batch))
        long = [i for i in range(len(groups)) if not fits[i]]
        flat = score_requests(model, [(groups[i][0], c) for i in long for c in groups[i][1]], batch_size,
                              progress=False)
        for i in long:
            results[i], flat = flat[: len(groups[i][1])], flat[len(groups[i][1]) :]
            bar.update(len(groups[i][1]))
    assert all(r is not None for r in results), "every group is scored, packed or unpacked"
    return results  # type: ignore[return-value]


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
