"""The `evaluate` stage: every model against held-out data, with chance and baselines beside each score.

- the pretrained model: language modelling on held-out WikiText-2 (loss, perplexity, bits per byte,
  word-level perplexity) and zero-shot benchmarks (acc, acc_norm, standard error, chance; LAMBADA
  last-word accuracy and perplexity);
- the classifier and the instruction model on the test splits stored with them, and the aligned model on
  the instruction model's test prompts, beside it (ROUGE-L of both; with a judge, a pairwise win rate).

Every scored item goes to `<out>/<task>.jsonl` with the model's choice, for error analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from scratchlm.config.evaluation import EvaluateParams
from scratchlm.evaluation.language_modeling import language_model_metrics
from scratchlm.evaluation.metrics import paired_bootstrap
from scratchlm.evaluation.zero_shot import benchmarks
from scratchlm.io import DataFormatError, document_shards, read_documents, write_jsonl
from scratchlm.launch import usable_cpus
from scratchlm.model.gpt import GPT, load_model
from scratchlm.tokenizer import EOT, load_tokenizer, timed


@dataclass(frozen=True)
class EvalInputs:
    """The folders evaluation reads (their paths live in dvc.yaml)."""

    benchmarks: Path  # one <task>.jsonl per task
    dedup: Path
    pretrain: Path
    classifier: Path
    classifier_data: list[Path]
    instruct: Path
    instruct_data: list[Path]
    aligned: Path


def held_out_texts(dedup_dir: Path, split: str, sources: list[str] | None, limit: int | None
                   ) -> dict[str, list[str]]:
    """{name: texts} of the split, the first `limit` by id each: the given sources together under their
    joined name, or (None) each source on its own; a split with no folder has none."""
    docs = sorted((d for shard in document_shards(dedup_dir / split) for d in read_documents(shard)
                   if sources is None or d["source"] in sources), key=lambda d: d["id"])
    groups: dict[str, list[str]] = {}
    for doc in docs:
        texts = groups.setdefault("+".join(sources) if sources else doc["source"], [])
        if limit is None or len(texts) < limit:
            texts.append(doc["text"])
    return dict(sorted(groups.items()))


def scored_sets(dedup_dir: Path, params: EvaluateParams) -> dict[str, list[str]]:
    """`{<sources>_<split>: texts}` over the configured splits, or (null) every held-out split that has
    documents. A split or sources named in params and absent from the data is an error."""
    sets = {}
    for split in params.lm_splits or ("val", "test"):
        found = held_out_texts(dedup_dir, split, params.lm_sources, params.lm_max_documents)
        if not found and params.lm_splits:
            what = f"sources {params.lm_sources}" if params.lm_sources else "held-out documents"
            raise DataFormatError(f"{dedup_dir / split}: no documents of {what} (evaluate.lm_splits lists {split!r})")
        sets.update({f"{name}_{split}": texts for name, texts in found.items()})
    if not sets:
        raise DataFormatError(f"{dedup_dir}: no held-out documents in val or test to score")
    return sets


def language_modeling(model: GPT, tokenizer: Tokenizer, dedup_dir: Path, params: EvaluateParams
                      ) -> dict[str, dict[str, float]]:
    encode, bos = (lambda t: tokenizer.encode(t).ids), tokenizer.token_to_id(EOT)
    return {name: language_model_metrics(model, texts, encode, bos, params.lm_stride, params.batch_size, desc=name)
            for name, texts in scored_sets(dedup_dir, params).items()}


def summary(tasks: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean acc / acc_norm / chance over the multiple-choice tasks (LAMBADA is not multiple choice)."""
    mc = [m for task, m in tasks.items() if task != "lambada"]
    if not mc:
        return {}
    return {key: sum(m[key] for m in mc) / len(mc) for key in ("acc", "acc_norm", "chance")} | {"tasks": len(mc)}


def evaluate_all(inputs: EvalInputs, out_dir: Path, params: EvaluateParams) -> dict[str, Any]:
    """All the scores, as the metrics dict the stage writes to reports/metrics/evaluate.json."""
    from scratchlm.evaluation.downstream import evaluate_classifier, evaluate_instruct

    torch.set_num_threads(params.num_threads or usable_cpus())
    torch.manual_seed(0)
    model, tokenizer = load_model(inputs.pretrain), load_tokenizer(inputs.pretrain / "tokenizer.json")
    lm, lm_seconds = timed(language_modeling, model, tokenizer, inputs.dedup, params)
    tasks = benchmarks(model, tokenizer, inputs.benchmarks, out_dir, params)
    (classifier, rows), cls_seconds = timed(evaluate_classifier, inputs.classifier_data, inputs.classifier)
    write_jsonl(out_dir / "classifier_test.jsonl", rows)
    (instruct, answers), ins_seconds = timed(evaluate_instruct, inputs.instruct_data, inputs.instruct,
                                             params.instruct_items)
    write_jsonl(out_dir / "instruct_test.jsonl", answers)
    (aligned, aligned_answers), al_seconds = timed(evaluate_instruct, inputs.instruct_data, inputs.aligned,
                                                   params.instruct_items)
    write_jsonl(out_dir / "aligned_test.jsonl", aligned_answers)
    aligned["rouge_l_vs_instruct"] = aligned["rouge_l"] - instruct["rouge_l"]
    # the same prompts in the same order: the gain's interval over which prompts were drawn
    aligned["rouge_l_gain"] = paired_bootstrap([r["rouge_l"] for r in aligned_answers], [r["rouge_l"] for r in answers])
    judge_scores(instruct, aligned, answers, aligned_answers, params)
    return {"language_modeling": lm, "benchmarks": tasks, "benchmark_mean": summary(tasks),
            "classifier": classifier, "instruct": instruct, "aligned": aligned,
            "seconds": {"language_modeling": round(lm_seconds, 2),
                        "benchmarks": round(sum(t["seconds"] for t in tasks.values()), 2),
                        "classifier": round(cls_seconds, 2), "instruct": round(ins_seconds, 2),
                        "aligned": round(al_seconds, 2)}}


def judge_scores(instruct: dict[str, Any], aligned: dict[str, Any], answers: list[dict[str, Any]],
                 aligned_answers: list[dict[str, Any]], params: EvaluateParams) -> None:
    """With `evaluate.judge` set: each model's mean judge score, and the aligned model's pairwise win rate
    against the instruction model on the same prompts (both orders); else a note that the judge was skipped."""
    from scratchlm.evaluation.judge import judge_answers, judge_pairwise

    judge = params.judge
    for metrics, rows in ((instruct, answers), (aligned, aligned_answers)):
        metrics["judge"] = judge_answers(rows[: judge.items], judge.endpoint, judge.model, judge.api_key_env,
                                         judge.timeout_s)
    pairs = [{"instruction": new["instruction"], "input": new["input"], "reference": new["reference"],
              "a": new["generated"], "b": old["generated"]}
             for new, old in zip(aligned_answers[: judge.items], answers[: judge.items], strict=True)]
    aligned["judge_pairwise"] = judge_pairwise(pairs, judge.endpoint, judge.model, judge.api_key_env, judge.timeout_s)
