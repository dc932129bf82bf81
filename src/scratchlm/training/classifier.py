"""Fine-tuning the pretrained GPT as a text classifier (spam detection, as in LLMs-from-scratch ch. 6).

The GPT body reads right-padded token ids; with causal attention nothing after a position can change
it, so the hidden state of the last real token summarises the message exactly, padding or not. A
linear head maps that state to class logits. The skeleton (optimizer, schedule, NaN stop, RNG in
checkpoints) is the pretraining LightningModule's; only the data, the head and the loss differ.

The stage (`finetune_classifier`): setup → fit → test → export, next to two baselines on the same split.
The split is stored with the model (`split.jsonl`), so evaluation later scores exactly the held-out
test messages. The checkpoint with the best validation F1 is the one exported.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, DistributedSampler

from scratchlm.config.training import FinetuneClassifierParams, OptimParams
from scratchlm.evaluation.metrics import baselines, class_metrics, confusion
from scratchlm.io import DataFormatError, read_set
from scratchlm.model.classifier import EncodedDataset, GPTClassifier, encode, predict, trim_to_longest
from scratchlm.tokenizer import PAD
from scratchlm.training.callbacks import LogFn
from scratchlm.training.checkpoint import best_checkpoint, epoch_checkpoints, fit_resuming
from scratchlm.training.class_metrics import train_scores
from scratchlm.training.data import own_generator
from scratchlm.training.finetune import EpochLog, finetune_fingerprint, prepare, trainer_for
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
    """Cross-entropy on the class (optionally weighted) + `lm_loss_weight` × next-token loss (GPT-1).

    `positive` is the index of the class precision/recall/F1 are reported for (None: macro averages).
    """

    def __init__(self, model: GPTClassifier, optim: OptimParams, total_steps: int, labels: Sequence[str],
                 positive: int | None, lm_loss_weight: float, weights: torch.Tensor | None, pad_id: int) -> None:
        super().__init__(model.body.config, optim, total_steps, model=model.body)
        self.classifier = model
        self.labels, self.positive, self.lm_loss_weight, self.pad_id = list(labels), positive, lm_loss_weight, pad_id
        self.register_buffer("weights", weights if weights is not None else torch.ones(model.head.out_features))
        self.predictions: dict[str, list[torch.Tensor]] = {"val": []}
        self.train_scores = train_scores(len(labels), positive)
        object.__setattr__(self, "_forward", torch.compile(model) if optim.compile else model)

    def compute_loss(self, batch: Any) -> torch.Tensor:
        return self.loss_and_logits(batch)[0]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits = self.loss_and_logits(batch)
        positive = self.positive
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
        if self.lm_loss_weight:
            targets = ids[:, 1:].masked_fill(ids[:, 1:] == self.pad_id, -100)
            lm_logits = self.classifier.body.lm_head(hidden[:, :-1])
            lm = F.cross_entropy(lm_logits.float().reshape(-1, lm_logits.size(-1)), targets.reshape(-1),
                                 ignore_index=-100)
            loss = loss + self.lm_loss_weight * lm
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
        positive = None if self.positive is None else self.labels[self.positive]
        for name, value in class_metrics(pred, true, self.labels, positive).items():
            if not isinstance(value, dict):  # the per-class table goes to the metrics file, not the epoch log
                self.log(f"{split}_{name}", value)

    def trained_module(self) -> nn.Module:
        return self.classifier


# ------------------------------------------------------------------------------------ the stage


def load_labelled(paths: list[Path], labels: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of the classification set's files, and the class labels in head order (`labels`, or the
    data's own labels sorted when null); an unknown label or an empty set is named."""
    records = read_set(paths)
    shown = ", ".join(str(path) for path in paths) or "no file"
    if not records:
        raise DataFormatError(f"{shown}: no records")
    labels = list(labels) if labels else sorted({str(r.get("label")) for r in records if r.get("label") is not None})
    if len(labels) < 2:
        raise DataFormatError(f"{shown}: only one label ({labels}): a classifier needs two or more")
    check_labels(records, labels, shown)
    return records, labels

def positive_label(positive: str | None, labels: list[str], where: str) -> str | None:
    """The class precision/recall/F1 are reported for, checked against the labels the data has."""
    if positive is not None and positive not in labels:
        raise DataFormatError(f"{where}: finetune_classifier.positive_label {positive!r} is not one of the labels "
                              f"{labels} (set it to one of them, or null for macro averages)")
    if positive is not None and len(labels) > 2:
        raise DataFormatError(f"{where}: finetune_classifier.positive_label {positive!r} is for two classes; the "
                              f"data has {len(labels)} ({labels}): set it to null (macro averages)")
    return positive

def loaders(splits: dict[str, list[dict[str, Any]]], tokenizer: Tokenizer, labels: list[str], max_length: int,
            batch_size: int, seed: int) -> dict[str, DataLoader]:
    """One loader per split; train is shuffled in an order that depends on (seed, epoch) only.

    A one-replica `DistributedSampler` is torch's sampler with `set_epoch`, which Lightning calls before
    each epoch with the epoch count it restores on resume; a shuffling generator's state would restart.
    """
    pad = tokenizer.token_to_id(PAD)
    if pad is None:
        raise DataFormatError(f"the tokenizer has no {PAD} token to pad with")
    out = {}
    for name, records in splits.items():
        data = EncodedDataset(encode([r["text"] for r in records], [labels.index(r["label"]) for r in records],
                                     lambda t: tokenizer.encode(t).ids, max_length, pad))
        sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed) if name == "train" else None
        out[name] = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=0,
                               generator=own_generator(seed), collate_fn=trim_to_longest)
    return out

def finetune_classifier(data_files: list[Path], pretrain_dir: Path, out_dir: Path, ckpt_dir: Path,
                        params: FinetuneClassifierParams,
                        log_fn: LogFn | None = None, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Fine-tune, pick the best epoch by validation F1, score test, export; returns the metrics.

    `ckpt_dir` holds `last.ckpt` and the best epoch's checkpoint across runs (resumed when the
    fingerprint matches); `callbacks` are added to the Trainer's own (fault injection in tests).
    """
    records, labels = load_labelled(data_files, params.labels)
    positive = positive_label(params.positive_label, labels, str(data_files[0].parent))
    splits = stratified_split(records, params.split, params.seed)
    tokenizer, body = prepare("finetune_classifier", params, splits, pretrain_dir, out_dir)
    model = GPTClassifier(body, len(labels))
    set_trainable(model, params.trainable, params.last_n_blocks)
    data = loaders(splits, tokenizer, labels, params.max_length, params.batch_size, params.seed)
    weights = class_weights(data["train"].dataset.data.labels, len(labels)) if params.class_weighting else None
    module = ClassifierModule(model, params, params.epochs * len(data["train"]), labels,
                              None if positive is None else labels.index(positive), params.lm_loss_weight, weights,
                              tokenizer.token_to_id(PAD))
    epochs = EpochLog(log_fn)
    best = best_checkpoint(ckpt_dir, "val_f1")
    trainer = trainer_for(params, [epochs, best, *epoch_checkpoints(ckpt_dir), *(callbacks or [])])
    fit_resuming(trainer, module, data, ckpt_dir, finetune_fingerprint(params, data_files, pretrain_dir))
    module.load_state_dict(torch.load(best.best_model_path, weights_only=True, map_location="cpu")["state_dict"])
    pred, true = predict(model, data["test"])
    val_pred, val_true = predict(model, data["val"])
    export_classifier(model, labels, tokenizer, pretrain_dir, out_dir)
    return {"labels": labels, "test": class_metrics(pred, true, labels, positive),
            "confusion": confusion(pred, true, len(labels)),
            "val_confusion": confusion(val_pred, val_true, len(labels)),
            "baselines": baselines(splits, labels, positive),
            "best_epoch": int(max(epochs.history, key=lambda h: h.get("val_f1", -1))["epoch"]),
            "split_sizes": {k: len(v) for k, v in splits.items()}, "epochs": epochs.history}

def export_classifier(model: GPTClassifier, labels: list[str], tokenizer: Tokenizer, pretrain_dir: Path,
                      out_dir: Path) -> None:
    """Weights (body + head, no pickle), config with the head and label names, the tokenizer."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "body.lm_head.weight"}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((pretrain_dir / "config.json").read_text(encoding="utf-8"))
    config["head"] = {"type": "classification", "labels": labels, "pooling": "last_token"}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tokenizer.save(str(out_dir / "tokenizer.json"))
