"""Classification metrics the classifier logs while it trains (its validation and test splits are scored with
`scratchlm.evaluation.metrics`).
"""

from __future__ import annotations

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
