"""The metrics a fine-tuned model is scored with, during its stage and on its held-out test split.

Classification: accuracy, and precision/recall/F1 of the positive class (two classes, as the book scores
spam) or their macro averages, all from torchmetrics; the confusion matrix; and two baselines on the same
split. Generation: ROUGE-L and exact match of answers against references.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def binary_metrics(pred: torch.Tensor, true: torch.Tensor, positive: int = 1) -> dict[str, float]:
    """Accuracy, and precision/recall/F1 of the positive class (torchmetrics, not hand-rolled)."""
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_f1_score,
        binary_precision,
        binary_recall,
    )

    p, t = (pred == positive).long(), (true == positive).long()
    return {"accuracy": float(binary_accuracy(p, t)), "precision": float(binary_precision(p, t)),
            "recall": float(binary_recall(p, t)), "f1": float(binary_f1_score(p, t))}


def class_metrics(pred: torch.Tensor, true: torch.Tensor, labels: Sequence[str], positive: str | None
                  ) -> dict[str, Any]:
    """Accuracy; precision/recall/F1 of `positive` (two classes, as the book scores spam), else their macro
    averages (every class counts the same, whatever its size); `macro_f1` always; with more than two
    classes, `per_class`: each label's precision, recall, F1 and support."""
    from torchmetrics.functional.classification import (
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    n = len(labels)
    per = {name: [float(v) for v in fn(pred, true, num_classes=n, average="none")]
           for name, fn in (("precision", multiclass_precision), ("recall", multiclass_recall),
                            ("f1", multiclass_f1_score))}
    macro = {name: sum(values) / n for name, values in per.items()}
    if positive is not None:
        out: dict[str, Any] = binary_metrics(pred, true, positive=list(labels).index(positive))
    else:
        out = {"accuracy": float((pred == true).float().mean()) if len(true) else 0.0, **macro}
    out["macro_f1"] = macro["f1"]
    if n > 2:
        support = torch.bincount(true, minlength=n).tolist()
        out["per_class"] = {label: {"precision": per["precision"][i], "recall": per["recall"][i],
                                    "f1": per["f1"][i], "support": int(support[i])}
                            for i, label in enumerate(labels)}
    return out


def confusion(pred: torch.Tensor, true: torch.Tensor, n: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    matrix = torch.zeros(n, n, dtype=torch.long)
    matrix.index_put_((true, pred), torch.ones_like(true), accumulate=True)
    return matrix.tolist()


def baselines(splits: dict[str, list[dict[str, Any]]], labels: list[str], positive: str | None
              ) -> dict[str, dict[str, Any]]:
    """Majority class and TF-IDF + logistic regression, trained on train, scored on test like the model."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = splits["train"], splits["test"]
    true = torch.tensor([labels.index(r["label"]) for r in test]).long()
    majority = max(sorted({r["label"] for r in train}), key=[r["label"] for r in train].count)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform([r["text"] for r in train])
    model = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=0)
    model.fit(features, [labels.index(r["label"]) for r in train])
    tfidf = torch.tensor(model.predict(vectorizer.transform([r["text"] for r in test]))).long()
    return {"majority": class_metrics(torch.full_like(true, labels.index(majority)), true, labels, positive),
            "tfidf_logreg": class_metrics(tfidf, true, labels, positive)}


def rouge_l_scores(references: Sequence[str], predictions: Sequence[str]) -> list[float]:
    """Each pair's ROUGE-L F-measure (rouge-score, with stemming, as the Alpaca/LLM-from-scratch evals use)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for ref, pred in zip(references, predictions, strict=True)]


def rouge_l(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure."""
    scores = rouge_l_scores(references, predictions)
    return sum(scores) / max(1, len(scores))


def paired_bootstrap(new: Sequence[float], old: Sequence[float], confidence: float = 0.9, resamples: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """The mean of `new - old` over paired items (the same prompts), with a percentile interval from resampling
    the items: whether a gain is more than which prompts happened to be drawn."""
    import numpy as np

    diff = np.asarray(new, dtype=float) - np.asarray(old, dtype=float)
    if len(diff) == 0:
        raise ValueError("paired_bootstrap: no paired items")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "confidence": confidence,
            "items": int(len(diff))}


def exact_match(references: Sequence[str], predictions: Sequence[str]) -> float:
    same = sum(ref.strip().lower() == pred.strip().lower() for ref, pred in zip(references, predictions, strict=True))
    return same / max(1, len(references))
