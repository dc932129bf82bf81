"""Zero-shot benchmarks of a language model: each task's items scored, its metrics, its scored items on disk.

Its own module because the scaling ladder scores every rung with it: a rung stage then depends on this
code alone, not on the fine-tunes' scoring and the judge that the `evaluate` stage also runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from scratchlm.config.evaluation import EvaluateParams
from scratchlm.evaluation.multiple_choice import check_items, evaluate_task
from scratchlm.io import DataFormatError, read_jsonl, write_jsonl
from scratchlm.model.gpt import GPT
from scratchlm.tokenizer import EOT, timed


def load_task(benchmarks_dir: Path, task: str, limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` items of a task by id (the harness's `--limit`), checked."""
    path = benchmarks_dir / f"{task}.jsonl"
    if not path.is_file():
        raise DataFormatError(f"{path}: no such benchmark file (is '{task}' among download.sources.benchmarks?)")
    items = sorted(read_jsonl(path), key=lambda item: item["id"])[:limit]
    if not items:
        raise DataFormatError(f"{path}: no items")
    check_items(items, str(path))
    return items



def benchmarks(model: GPT, tokenizer: Tokenizer, benchmarks_dir: Path, out_dir: Path, params: EvaluateParams
               ) -> dict[str, dict[str, float]]:
    """Each task's metrics; its scored items go to `<out_dir>/<task>.jsonl`."""
    encode, bos = (lambda t: tokenizer.encode(t).ids), tokenizer.token_to_id(EOT)
    results = {}
    for task in params.tasks:
        items = load_task(benchmarks_dir, task, params.task_items.get(task, params.max_items))
        (metrics, records), seconds = timed(evaluate_task, model, task, items, encode, bos, params.batch_size)
        write_jsonl(out_dir / f"{task}.jsonl", records)
        results[task] = {**metrics, "seconds": round(seconds, 2)}
    return results
