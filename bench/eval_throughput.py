"""Multiple-choice items/s of the evaluate stage: batched requests vs one request at a time.

Scores the first `--items` HellaSwag items (by id) with the pretrained model both ways and checks the
two give the same log-likelihoods. Target (issue #8): batching ≥ 4× one-at-a-time.
Writes reports/bench/eval_throughput.json.   Usage: python bench/eval_throughput.py [--items 100]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import yaml
from _bench import Figure, report
from tokenizers import Tokenizer

from scratchlm.config import EvaluateParams
from scratchlm.evaluation.multiple_choice import score_items
from scratchlm.io import read_jsonl
from scratchlm.model.gpt import load_model
from scratchlm.tokenizer import EOT, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/pretrain")
    parser.add_argument("--task", default="data/raw/benchmarks/hellaswag.jsonl")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--out", default="reports/bench/eval_throughput.json")
    args = parser.parse_args()
    params = EvaluateParams(**yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["evaluate"])
    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model(Path(args.model))
    tokenizer = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    encode, bos = (lambda t: tokenizer.encode(t).ids), tokenizer.token_to_id(EOT)
    items = sorted(read_jsonl(args.task), key=lambda item: item["id"])[: args.items]
    requests = sum(len(item["requests"]) for item in items)
    single, one_s = timed(score_items, model, items, encode, bos, batch_size=1, progress=False)
    batched, many_s = timed(score_items, model, items, encode, bos, batch_size=params.batch_size, progress=False)
    worst = max(abs(a.loglik - b.loglik) for xs, ys in zip(single, batched, strict=True)
                for a, b in zip(xs, ys, strict=True))
    figures = [
        Figure("multiple choice, one request at a time", len(items) / one_s, "items/s"),
        Figure(f"multiple choice, batches of {params.batch_size}", len(items) / many_s, "items/s"),
        Figure("batched / one at a time", one_s / many_s, "x", target=4),
        Figure("largest log-likelihood difference", worst, "nats", target=1e-3, higher_is_better=False,
               note=f"{len(items)} items, {requests} requests"),
    ]
    report(f"evaluate: multiple-choice scoring ({Path(args.task).stem})", figures, args.out)


if __name__ == "__main__":
    main()
