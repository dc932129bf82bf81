"""Zero-shot multiple choice scored as lm-evaluation-harness scores it, plus LAMBADA.

Each choice is one (context, continuation) request; the model picks the choice whose continuation
has the highest summed log-likelihood (`acc`), or the highest log-likelihood per character of the
continuation (`acc_norm`, which stops long answers from being penalised for their length). The
standard error is the harness's: the sample standard deviation of the per-item scores over √n.
Chance is the mean of 1/(number of choices), the accuracy of guessing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from scratchlm.evaluation.loglik import Encode, Group, Scored, encode_pair, score_groups
from scratchlm.io import DataFormatError
from scratchlm.model.gpt import GPT


def check_items(items: Sequence[dict[str, Any]], source: str) -> None:
    """Every item has requests and a gold index among them; the first bad one is named."""
    for item in items:
        requests = item.get("requests")
        if not isinstance(requests, list) or not requests:
            raise DataFormatError(f"{source}: item {item.get('id')}: no requests")
        gold = item.get("gold")
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(requests):
            raise DataFormatError(f"{source}: item {item.get('id')}: gold {gold!r} is not an index into its "
                                  f"{len(requests)} choices")


def score_items(model: GPT, items: Sequence[dict[str, Any]], encode: Encode, bos: int, batch_size: int = 32,
                desc: str = "multiple choice", progress: bool = True) -> list[list[Scored]]:
    """One list of scored choices per item. The choices of an item that share a context (all of them,
    in most tasks) are one packed group, so the context is run once for all of its continuations."""
    groups: list[Group] = []
    where: list[list[tuple[int, int]]] = []  # per item: (group, index in group) of each request
    for item in items:
        by_context: dict[tuple[int, ...], int] = {}
        places = []
        for request in item["requests"]:
            context, continuation = encode_pair(encode, request["context"], request["continuation"], bos)
            group = by_context.setdefault(tuple(context), len(groups))
            if group == len(groups):
                groups.append((context, []))
            places.append((group, len(groups[group][1])))
            groups[group][1].append(continuation)
        where.append(places)
    scored = score_groups(model, groups, batch_size, desc=desc, progress=progress)
    return [[scored[group][index] for group, index in places] for places in where]


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def item_record(item: dict[str, Any], scored: Sequence[Scored]) -> dict[str, Any]:
    """What error analysis needs for one item: every choice's log-likelihood and the model's picks."""
    logliks = [s.loglik for s in scored]
    chars = [max(1, len(r["continuation"])) for r in item["requests"]]
    pred, pred_norm = argmax(logliks), argmax([ll / n for ll, n in zip(logliks, chars, strict=True)])
    return {"id": item["id"], "gold": item["gold"], "pred": pred, "pred_norm": pred_norm,
            "acc": float(pred == item["gold"]), "acc_norm": float(pred_norm == item["gold"]),
            "logliks": [round(ll, 4) for ll in logliks], "choices": item.get("choices", [])}


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the sample standard deviation (0 for fewer than two items)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def task_metrics(items: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> dict[str, float]:
    acc = [r["acc"] for r in records]
    acc_norm = [r["acc_norm"] for r in records]
    return {"acc": statistics.fmean(acc), "acc_stderr": mean_stderr(acc),
            "acc_norm": statistics.fmean(acc_norm), "acc_norm_stderr": mean_stderr(acc_norm),
            "chance": statistics.fmean(1 / len(item["requests"]) for item in items), "items": len(records)}


def lambada_record(item: dict[str, Any], scored: Scored) -> dict[str, Any]:
    return {"id": item["id"], "target": item["requests"][0]["continuation"], "loglik": round(scored.loglik, 4),
            "acc": float(scored.is_greedy), "tokens": scored.tokens}


def lambada_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Last-word accuracy (greedy decoding reproduces the whole word) and the target word's perplexity.

    Perplexity is the harness's: exp of minus the mean per-item log-likelihood of the target word.
    """
    acc = [r["acc"] for r in records]
    return {"acc": statistics.fmean(acc), "acc_stderr": mean_stderr(acc),
            "ppl": math.exp(-statistics.fmean(r["loglik"] for r in records)), "chance": 0.0,
            "items": len(records)}


def evaluate_task(model: GPT, task: str, items: Sequence[dict[str, Any]], encode: Encode, bos: int,
                  batch_size: int = 32, progress: bool = True) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, per-item records) for one task; LAMBADA is the one scored by greedy match."""
    scored = score_items(model, items, encode, bos, batch_size, desc=task, progress=progress)
    if task == "lambada":
        records = [lambada_record(item, s[0]) for item, s in zip(items, scored, strict=True)]
        return lambada_metrics(records), records
    records = [item_record(item, s) for item, s in zip(items, scored, strict=True)]
    return task_metrics(items, records), records
