"""One rung of the ladder: the pretrain recipe at the rung's size, trained, then scored on the benchmarks.

The rung folder is a complete model folder (weights, config, tokenizer) plus the benchmarks' scored
items, so `scratchlm generate --model models/scaling/<rung>` and the audit work on it like on any model.
There is no resume: a rung is a few minutes at most, and a failed one leaves the previous folder as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from scratchlm.config.evaluation import EvaluateParams
from scratchlm.config.scaling import ScalingRunParams
from scratchlm.evaluation.zero_shot import benchmarks
from scratchlm.io import dumps_json
from scratchlm.lineage.runrecord import split_timing
from scratchlm.model.gpt import load_model
from scratchlm.scaling.ladder import RUNG_FILE, rung_params
from scratchlm.tokenizer import load_tokenizer
from scratchlm.training.pretrain import LogFn, pretrain


def train_rung(run: ScalingRunParams, tokens_dir: Path, tokenizer_dir: Path, benchmarks_dir: Path, out_dir: Path,
               log_fn: LogFn | None = None) -> dict[str, Any]:
    """Train and score one rung into `out_dir`; the metrics name its size, budget, FLOPs and scores."""
    tokenizer = load_tokenizer(tokenizer_dir / "tokenizer.json")
    params = rung_params(run.recipe, run, tokenizer.get_vocab_size())
    with tempfile.TemporaryDirectory(prefix="scaling-ckpt-") as ckpt:
        metrics, _ = pretrain(tokens_dir, tokenizer_dir, out_dir, Path(ckpt), params, log_fn)
    model = load_model(out_dir).eval()
    (out_dir / "benchmarks").mkdir()
    scored = benchmarks(model, tokenizer, benchmarks_dir, out_dir / "benchmarks",
                        EvaluateParams(tasks=run.tasks, max_items=run.benchmark_items))
    results = {"rung": run.rung, "n_layer": run.size.n_layer, "n_head": run.size.n_head, "n_embd": run.size.n_embd,
               "steps": metrics["steps"], "params": metrics["params_with_embeddings"], "tokens": metrics["tokens_seen"],
               "flops": metrics["flops_per_token"] * metrics["tokens_seen"], "val_loss": metrics["val_loss"],
               "val_bpb": metrics["val_bpb"], "benchmarks": scored,
               **{key: metrics[key] for key in ("train_seconds", "tokens_per_s", "mfu")}}
    (out_dir / RUNG_FILE).write_text(dumps_json(split_timing(results)[0]), encoding="utf-8")  # what the fit reads
    return results
