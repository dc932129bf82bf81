"""Fine-tuning the pretrained GPT as a text classifier (spam detection, as in LLMs-from-scratch ch. 6).

The GPT body reads right-padded token ids; with causal attention nothing after a position can change
it, so the hidden state of the last real token summarises the message exactly, padding or not. A
linear head maps that state to class logits. The skeleton (optimizer, schedule, NaN stop, RNG in
checkpoints) is the pretraining LightningModule's; only the data, the head and the loss differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from scratchlm.io import DataFormatError
from scratchlm.model.gpt import GPT
from scratchlm.training.module import GPTModule


def stratified_split(records: Sequence[dict[str, Any]], ratios: dict[str, float], seed: int
                     ) -> dict[str, list[dict[str, Any]]]:
    """Seeded split that keeps each label's share in every part (order inside a label by id hash)."""
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in ratios}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_label.setdefault(record["label"], []).append(record)
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
        start = 0
        for index, (name, ratio) in enumerate(ratios.items()):
            end = len(group) if index == len(ratios) - 1 else start + round(ratio * len(group))
            parts[name].extend(group[start:end])
            start = end
    return {name: sorted(part, key=lambda r: r["id"]) for name, part in parts.items()}


def check_labels(records: Sequence[dict[str, Any]], labels: Sequence[str], source: str) -> None:
    """Every record has non-empty text and a known label; the first bad one is named."""
    for index, record in enumerate(records, start=1):
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            raise DataFormatError(f"{source}: record {index} ({record.get('id')}): empty or missing text")
        if record.get("label") not in labels:
            raise DataFormatError(f"{source}: record {index} ({record.get('id')}): label {record.get('label')!r} "
                                  f"is not one of {list(labels)}")


@dataclass
class Encoded:
    ids: torch.Tensor  # (n, max_length) right-padded
    lengths: torch.Tensor  # (n,)
    labels: torch.Tensor  # (n,)


def encode(texts: Sequence[str], labels: Sequence[int], encode_fn: Any, max_length: int, pad_id: int) -> Encoded:
    """Token ids truncated to max_length and right-padded with the pad token."""
    rows = [encode_fn(text)[:max_length] or [pad_id] for text in texts]
    ids = torch.full((len(rows), max_length), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return Encoded(ids, torch.tensor([len(r) for r in rows]), torch.tensor(list(labels), dtype=torch.long))


class EncodedDataset(Dataset):
    def __init__(self, data: Encoded) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.data.ids[i], self.data.lengths[i], self.data.labels[i]


def trim_to_longest(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate, then cut the padding past the batch's longest text: SMS are mostly far shorter than
    max_length, and causal attention makes the cut invisible to every real position."""
    ids, lengths, labels = default_collate(batch)
    return ids[:, : int(lengths.max())].contiguous(), lengths, labels


class GPTClassifier(nn.Module):
    """GPT body + a linear head on the last real token's hidden state."""

    def __init__(self, body: GPT, n_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.config.n_embd, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, per-position hidden states) — the latter feeds the auxiliary LM loss."""
        hidden = self.body.hidden_states(ids)
        last = hidden[torch.arange(ids.size(0), device=ids.device), lengths - 1]
        return self.head(last), hidden


def set_trainable(model: GPTClassifier, trainable: str, last_n_blocks: int) -> None:
    """`head`: only the head (and final LayerNorm); `last_n_blocks`: plus the last blocks; `all`: everything."""
    for p in model.parameters():
        p.requires_grad = trainable == "all"
    if trainable == "all":
        return
    tuned: list[nn.Module] = [model.head, model.body.ln_f]
    if trainable == "last_n_blocks":
        tuned += list(model.body.h[-last_n_blocks:])
    for module in tuned:
        for p in module.parameters():
            p.requires_grad = True


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ("balanced", as scikit-learn defines it)."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    return labels.numel() / (n_classes * counts)


class ClassifierModule(GPTModule):
    """Cross-entropy on the class (optionally weighted) + `lm_loss_weight` × next-token loss (GPT-1)."""

    def __init__(self, model: GPTClassifier, hp: Any, weights: torch.Tensor | None, pad_id: int) -> None:
        super().__init__(model.body.config, hp, model=model.body)
        self.classifier = model
        self.pad_id = pad_id
        self.register_buffer("weights", weights if weights is not None else torch.ones(model.head.out_features))
        self.predictions: dict[str, list[torch.Tensor]] = {"val": []}
        self.train_scores = train_scores(len(hp.labels), hp.positive_index)
        object.__setattr__(self, "_forward", torch.compile(model) if hp.compile else model)

    def compute_loss(self, batch: Any) -> torch.Tensor:
        return self.loss_and_logits(batch)[0]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits = self.loss_and_logits(batch)
        positive = self.hp.positive_index
        if positive is None:
            self.train_scores.update(logits.argmax(-1), batch[2])
        else:
            self.train_scores.update((logits.argmax(-1) == positive).long(), (batch[2] == positive).long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].size(0))
        # reduced before any `on_train_epoch_end` hook runs: the epoch log records this epoch's values
        self.log_dict(self.train_scores, on_step=False, on_epoch=True)
        return self.checked(loss)

    def loss_and_logits(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths, labels = batch
        logits, hidden = self._forward(ids, lengths)
        loss = F.cross_entropy(logits.float(), labels, weight=self.weights)
        if self.hp.lm_loss_weight:
            targets = ids[:, 1:].masked_fill(ids[:, 1:] == self.pad_id, -100)
            lm_logits = self.classifier.body.lm_head(hidden[:, :-1])
            lm = F.cross_entropy(lm_logits.float().reshape(-1, lm_logits.size(-1)), targets.reshape(-1),
                                 ignore_index=-100)
            loss = loss + self.hp.lm_loss_weight * lm
        return loss, logits

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        ids, lengths, labels = batch
        logits, _ = self.classifier(ids, lengths)
        self.log("val_loss", F.cross_entropy(logits.float(), labels, weight=self.weights), on_epoch=True,
                 batch_size=ids.size(0))
        self.predictions["val"].append(torch.stack([logits.argmax(-1), labels]).cpu())

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val")

    def _log_split_metrics(self, split: str) -> None:
        if not self.predictions[split]:
            return
        pred, true = torch.cat(self.predictions[split], dim=1)
        self.predictions[split].clear()
        positive = None if self.hp.positive_index is None else self.hp.labels[self.hp.positive_index]
        for name, value in class_metrics(pred, true, self.hp.labels, positive).items():
            if not isinstance(value, dict):  # the per-class table goes to the metrics file, not the epoch log
                self.log(f"{split}_{name}", value)

    def trained_module(self) -> nn.Module:
        return self.classifier


def train_scores(n_classes: int, positive: int | None) -> MetricCollection:
    """Train accuracy/precision/recall/F1 as torchmetrics objects that Lightning reduces at the epoch's end:
    of the positive class with one, else macro averages over the classes (as `class_metrics`).

    Logged from `training_step`, their epoch values reach `callback_metrics` before the callbacks'
    `on_train_epoch_end` (a value logged in the module's own `on_train_epoch_end` would come after
    them, so an epoch log would record the previous epoch's, and none after a resume). Their state is
    not persistent: checkpoints and exports keep the same keys.
    """
    if positive is not None:
        return MetricCollection({"accuracy": BinaryAccuracy(), "precision": BinaryPrecision(),
                                 "recall": BinaryRecall(), "f1": BinaryF1Score()}, prefix="train_")
    n = n_classes
    return MetricCollection({"accuracy": MulticlassAccuracy(n, average="micro"),
                             "precision": MulticlassPrecision(n, average="macro"),
                             "recall": MulticlassRecall(n, average="macro"),
                             "f1": MulticlassF1Score(n, average="macro")}, prefix="train_")


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


def load_classifier(model_dir: Any) -> tuple[GPTClassifier, list[str]]:
    """A classifier exported by the finetune_classifier stage, and its label names (no pickle).

    config.json is checked against the weights' header before anything is allocated; every bad file
    is a one-line ValueError naming it.
    """
    from pathlib import Path

    from scratchlm.model.gpt import check_weights, expected_shapes, load_config, load_weights, read_config

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    head = config.pop("head", None)
    if not isinstance(head, dict) or head.get("type") != "classification":
        raise ValueError(f"{model_dir}: config.json has no classification head (not a classifier export)")
    if not isinstance(head.get("labels"), list) or len(head["labels"]) < 2:
        raise ValueError(f"{model_dir / 'config.json'}: head.labels must be a list of at least two labels, "
                         f"got {head.get('labels')!r}")
    labels = [str(label) for label in head["labels"]]
    body = load_config(model_dir, config)
    weights = model_dir / "model.safetensors"
    check_weights(weights, expected_shapes(lambda: GPTClassifier(GPT(body), len(labels)), ("body.lm_head.weight",)))
    state = load_weights(weights)
    model = GPTClassifier(GPT(body), len(labels))
    state["body.lm_head.weight"] = state["body.wte.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval(), labels
