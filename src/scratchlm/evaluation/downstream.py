"""The fine-tuned models on the held-out test splits their stages stored next to them.

Each fine-tune writes `split.jsonl` (record id → split) and a manifest whose params say how it
tokenised its inputs (`max_length`, the positive label, the prompt template); evaluation reads both,
so it scores exactly the held-out records, prepared exactly as in training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from scratchlm.io import DataFormatError
from scratchlm.lineage.manifest import read_manifest
from scratchlm.tokenizer import load_tokenizer


def training_params(model_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(model_dir / "manifest.json")
    if not manifest or "params" not in manifest:
        raise DataFormatError(f"{model_dir / 'manifest.json'}: missing or without params")
    return manifest["params"]


def evaluate_classifier(data_files: list[Path], model_dir: Path, batch_size: int = 64
                        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Test-split accuracy, precision/recall/F1 (macro-F1 and per class), confusion matrix, next to the two
    baselines."""
    from scratchlm.evaluation.metrics import baselines, class_metrics, confusion
    from scratchlm.evaluation.splits import stored_splits
    from scratchlm.model.classifier import EncodedDataset, encode, load_classifier, predict, trim_to_longest

    model, labels = load_classifier(model_dir)
    params = training_params(model_dir)
    positive = params.get("positive_label")
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    splits = stored_splits(data_files, model_dir)
    test = splits["test"]
    data = encode([r["text"] for r in test], [labels.index(r["label"]) for r in test],
                  lambda t: tokenizer.encode(t).ids, params["max_length"], tokenizer.token_to_id("<|pad|>"))
    pred, true = predict(model, DataLoader(EncodedDataset(data), batch_size=batch_size, collate_fn=trim_to_longest))
    matrix = confusion(pred, true, len(labels))
    metrics = {**class_metrics(pred, true, labels, positive), "items": len(test),
               "confusion": {f"actual_{a}": {f"predicted_{p}": matrix[i][j] for j, p in enumerate(labels)}
                             for i, a in enumerate(labels)},
               "baselines": baselines(splits, labels, positive)}
    rows = [{"id": r["id"], "label": r["label"], "predicted": labels[int(p)], "correct": bool(p == t)}
            for r, p, t in zip(test, pred.tolist(), true.tolist(), strict=True)]
    return metrics, rows


def instruct_loss(model: Any, examples: list[tuple[list[int], list[int]]], pad: int, batch_size: int) -> float:
    """Mean next-token loss over response tokens only (the fine-tune's own objective)."""
    from scratchlm.prompts import IGNORE, collate

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            inputs, targets = collate(examples[start : start + batch_size], pad)
            logits = model(inputs)[0].float()
            total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                             ignore_index=IGNORE, reduction="sum"))
            count += int((targets != IGNORE).sum())
    return total / max(1, count)


def evaluate_instruct(data_files: list[Path], model_dir: Path, max_items: int | None, batch_size: int = 16
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Test-split response loss, and greedy answers scored by ROUGE-L and exact match."""
    from scratchlm.evaluation.metrics import exact_match, rouge_l_scores
    from scratchlm.evaluation.sampling import generate_answers
    from scratchlm.evaluation.splits import hash_order, stored_splits
    from scratchlm.model.gpt import load_model
    from scratchlm.prompts import encode_example, format_prompt
    from scratchlm.tokenizer import EOT, PAD

    model, params = load_model(model_dir), training_params(model_dir)
    template = json.loads((model_dir / "template.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    test = hash_order(stored_splits(data_files, model_dir)["test"], 0)  # its first items: a sample across sources
    prompts = [format_prompt(template["prompt_template"], template["input_template"], r["instruction"],
                             r.get("input", "")) for r in test]
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    examples = [encode_example(p, r["output"], encode, tokenizer.token_to_id(EOT), params["max_length"])
                for p, r in zip(prompts, test, strict=True)]
    loss = instruct_loss(model, examples, tokenizer.token_to_id(PAD), batch_size)
    scored = test[:max_items] if max_items else test
    answers = generate_answers(model, tokenizer, prompts[: len(scored)], params["max_new_tokens"])
    references = [r["output"] for r in scored]
    scores = rouge_l_scores(references, answers)
    rows = [{"id": r["id"], "instruction": r["instruction"], "input": r.get("input", ""), "reference": r["output"],
             "generated": a, "rouge_l": score} for r, a, score in zip(scored, answers, scores, strict=True)]
    return {"loss": loss, "rouge_l": sum(scores) / max(1, len(scores)), "exact_match": exact_match(references, answers),
            "items": len(test), "generated_items": len(scored)}, rows
