"""Multiple-choice items/s of the evaluate stage: packed and batched vs one request at a time.

Scores the first `--items` HellaSwag items (by id) with the pretrained model three ways: one
(context, continuation) request per forward pass; requests batched but each with its own copy of the
context; and the stage's way, each item's choices packed after one shared context and batched. All
three must give the same log-likelihoods. Target (issue #8): the stage's way ≥ 4× one at a time.
Writes reports/bench/eval_throughput.json.   Usage: python bench/eval_throughput.py [--items 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from _bench import Figure, best_of, report
from tokenizers import Tokenizer

from scratchlm.config.evaluation import EvaluateParams
from scratchlm.evaluation.loglik import encode_pair, score_requests
from scratchlm.evaluation.multiple_choice import score_items
from scratchlm.io import read_jsonl
from scratchlm.launch import usable_cpus
from scratchlm.model.gpt import load_model
from scratchlm.tokenizer import EOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/pretrain")
    parser.add_argument("--task", default="data/raw/benchmark/benchmarks/hellaswag.jsonl")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="each way is timed this often; the fastest counts")
    parser.add_argument("--out", default="reports/bench/eval_throughput.json")
    args = parser.parse_args()
    params = EvaluateParams(**yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["evaluate"])
    torch.set_num_threads(usable_cpus())
    model = load_model(Path(args.model))
    tokenizer = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    encode, bos = (lambda t: tokenizer.encode(t).ids), tokenizer.token_to_id(EOT)
    items = sorted(read_jsonl(args.task), key=lambda item: item["id"])[: args.items]
    requests = sum(len(item["requests"]) for item in items)
    pairs = [encode_pair(encode, r["context"], r["continuation"], bos) for item in items for r in item["requests"]]
    single, one_s = best_of(args.repeats, score_requests, model, pairs, batch_size=1, progress=False)
    batched, batched_s = best_of(args.repeats, score_requests, model, pairs, batch_size=params.batch_size,
                                 progress=False)
    packed, packed_s = best_of(args.repeats, score_items, model, items, encode, bos, batch_size=params.batch_size,
                               progress=False)
    packed = [s for scored in packed for s in scored]
    worst = max(abs(a.loglik - b.loglik) for other in (batched, packed) for a, b in zip(single, other, strict=True))
    figures = [
        Figure("multiple choice, one request at a time", len(items) / one_s, "items/s"),
        Figure(f"multiple choice, batches of {params.batch_size} requests", len(items) / batched_s, "items/s"),
        Figure("multiple choice, shared context packed + batched (stage)", len(items) / packed_s, "items/s"),
        Figure("batched / one at a time", one_s / batched_s, "x"),
        Figure("stage (packed + batched) / one at a time", one_s / packed_s, "x", target=4),
        Figure("largest log-likelihood difference", worst, "nats", target=1e-3, higher_is_better=False,
               note=f"{len(items)} items, {requests} requests"),
    ]
    report(f"evaluate: multiple-choice scoring ({Path(args.task).stem})", figures, args.out)


if __name__ == "__main__":
    main()
