"""The `finetune_classifier` stage: setup → fit → test → export, next to two baselines on the same split.

The split is stored with the model (`split.jsonl`), so evaluation later scores exactly the held-out
test messages. The checkpoint with the best validation F1 is the one exported.

Both fine-tunes resume like pretraining: `last.ckpt` in the stage's checkpoint folder (a persistent
DVC output) is written after every epoch and on Ctrl-C during an epoch, and resumed only when its
fingerprint (params, data, pretrained model, training code) matches. Data orders are functions of
(seed, epoch), so a run resumed at an epoch boundary ends with the same weights and metrics as one
that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import save_file
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, DistributedSampler

from scratchlm.io import DataFormatError, read_set, sha256_file, write_jsonl
from scratchlm.model.gpt import load_model, save_model
from scratchlm.tokenizer import EOT, PAD, load_tokenizer
from scratchlm.training.callbacks import CheckpointOnInterrupt, LogFn
from scratchlm.training.classifier import (
    ClassifierModule,
    EncodedDataset,
    GPTClassifier,
    check_labels,
    class_metrics,
    class_weights,
    encode,
    set_trainable,
    stratified_split,
    trim_to_longest,
)
from scratchlm.training.data import own_generator
from scratchlm.training.instruct import (
    IGNORE,
    InstructDataset,
    InstructModule,
    LengthBatches,
    check_records,
    collate,
    encode_example,
    exact_match,
    format_prompt,
    rouge_l,
    split_by_hash,
)
from scratchlm.training.module import effective_precision
from scratchlm.training.pretrain import CODE, LAST, resume_path

PRETRAINED_FILES = ("model.safetensors", "config.json", "tokenizer.json")


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


class EpochLog(L.Callback):
    """Train and validation loss/accuracy/precision/recall/F1 after each epoch, through `log_fn`.

    The history travels in the checkpoint (saved after this hook), so a resumed run reports every epoch.
    """

    def __init__(self, log_fn: LogFn | None) -> None:
        self.log_fn, self.history = log_fn, []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train_", "val_"))}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        if self.log_fn is not None:
            self.log_fn(metrics, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def fingerprint(params: Any, data_files: list[Path], pretrain_dir: Path) -> str:
    """What a fine-tune checkpoint must match to be resumed: params, data, pretrained model, training code.

    The pretrained files count because a new pretraining re-runs the stage: resuming would continue
    from the old body. The code counts for the reason pretraining's fingerprint gives.
    """
    parts = [type(params).__name__, json.dumps(params.model_dump(mode="json"), sort_keys=True),
             *(sha256_file(path) for path in data_files),
             *(sha256_file(pretrain_dir / name) for name in PRETRAINED_FILES)]
    parts += [sha256_file(p) for folder in CODE for p in sorted(folder.glob("*.py"))]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


class InterruptCheckpoint(CheckpointOnInterrupt):
    """Ctrl-C during an epoch's training batches saves `last.ckpt`; between epochs or in validation, nothing.

    A checkpoint taken after an epoch's last batch but before the next epoch's first one still carries
    the finished epoch's batch counter: Lightning would resume it by skipping the next epoch (or cut a
    validation short). There the finished epoch's `last.ckpt` is already the right state. A mid-epoch
    checkpoint keeps the progress, but Lightning restarts that epoch's batch order (it warns): resume
    is exact at epoch boundaries only.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.in_training_batches = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.in_training_batches = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_training_batches = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_training_batches = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.in_training_batches:
            super().on_exception(trainer, pl_module, exception)


def checkpointing(ckpt_dir: Path) -> tuple[ModelCheckpoint, InterruptCheckpoint]:
    """`last.ckpt` after every epoch, and on Ctrl-C during training batches (`InterruptCheckpoint`).

    It is ModelCheckpoint's top-1 with no monitor (the latest epoch) named `last`: `save_last` would not
    do, as Lightning writes it only when a top-k checkpoint was saved at the same step. Saved at the
    train epoch's end, after the epoch is validated and logged, so it holds the complete epoch; no
    version counter, so a resumed run overwrites the same file.
    """
    last = ModelCheckpoint(dirpath=ckpt_dir, filename=Path(LAST).stem, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    return last, InterruptCheckpoint(ckpt_dir / LAST)


def best_checkpoint(ckpt_dir: Path, monitor: str) -> ModelCheckpoint:
    """The epoch with the highest `monitor` (first of equals); list it before `checkpointing`'s so that
    `last.ckpt`, saved after it, records the best path, and a resumed run still knows the best epoch."""
    return ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor, mode="max", save_top_k=1, save_on_train_epoch_end=True,
                           enable_version_counter=False)


def fit(trainer: L.Trainer, module: L.LightningModule, data: dict[str, DataLoader], ckpt_dir: Path,
        expected: str) -> None:
    """Fit on the train and val loaders, resuming `last.ckpt` only if it carries the `expected` fingerprint."""
    resume = resume_path(ckpt_dir, expected)
    trainer.fit(module, train_dataloaders=data["train"], val_dataloaders=data["val"], ckpt_path=resume,
                weights_only=True)


def predict(model: GPTClassifier, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    preds, trues = [], []
    with torch.no_grad():
        for ids, lengths, labels in loader:
            preds.append(model(ids, lengths)[0].argmax(-1))
            trues.append(labels)
    return torch.cat(preds), torch.cat(trues)


def prepare(stage: str, params: Any, splits: dict[str, list[dict[str, Any]]], pretrain_dir: Path,
            out_dir: Path) -> tuple[Tokenizer, Any]:
    """Threads and seeds, the split stored beside the model, the tokenizer and the pretrained body."""
    torch.set_num_threads(params.num_threads or os.cpu_count() or 1)
    L.seed_everything(params.seed, workers=True, verbose=False)
    write_jsonl(out_dir / "split.jsonl", ({"id": r["id"], "split": s} for s, rs in splits.items() for r in rs))
    tokenizer = load_tokenizer(pretrain_dir / "tokenizer.json")
    body = load_model(pretrain_dir)
    if params.max_length > body.config.block_size:
        raise DataFormatError(f"{stage}.max_length {params.max_length} exceeds the model's "
                              f"block_size {body.config.block_size}")
    return tokenizer, body


def trainer_for(params: Any, callbacks: list[L.Callback], **overrides: Any) -> L.Trainer:
    """The fine-tunes' Trainer: epochs, precision and clipping from params, metrics through callbacks."""
    return L.Trainer(accelerator=params.accelerator, devices=1,
                     precision=effective_precision(params.precision, params.accelerator),
                     max_epochs=params.epochs, gradient_clip_val=params.grad_clip or None, logger=False,
                     num_sanity_val_steps=0, callbacks=callbacks, enable_model_summary=False, **overrides)


def finetune_classifier(data_files: list[Path], pretrain_dir: Path, out_dir: Path, ckpt_dir: Path, params: Any,
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
    hp = SimpleNamespace(**{**params.model_dump(), "labels": labels}, max_steps=params.epochs * len(data["train"]),
                         positive_index=None if positive is None else labels.index(positive))
    module = ClassifierModule(model, hp, weights, tokenizer.token_to_id(PAD))
    epochs = EpochLog(log_fn)
    best = best_checkpoint(ckpt_dir, "val_f1")
    trainer = trainer_for(params, [epochs, best, *checkpointing(ckpt_dir), *(callbacks or [])])
    fit(trainer, module, data, ckpt_dir, fingerprint(params, data_files, pretrain_dir))
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


def confusion(pred: torch.Tensor, true: torch.Tensor, n: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    matrix = torch.zeros(n, n, dtype=torch.long)
    matrix.index_put_((true, pred), torch.ones_like(true), accumulate=True)
    return matrix.tolist()


def export_classifier(model: GPTClassifier, labels: list[str], tokenizer: Tokenizer, pretrain_dir: Path,
                      out_dir: Path) -> None:
    """Weights (body + head, no pickle), config with the head and label names, the tokenizer."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "body.lm_head.weight"}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((pretrain_dir / "config.json").read_text(encoding="utf-8"))
    config["head"] = {"type": "classification", "labels": labels, "pooling": "last_token"}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tokenizer.save(str(out_dir / "tokenizer.json"))


# ------------------------------------------------------------------------------------ instruction


def generate_answers(model: Any, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers, each stopped by the end token (the model learned to emit it)."""
    eot, answers = tokenizer.token_to_id(EOT), []
    model.eval()
    limit = model.config.block_size - max_new_tokens
    for prompt in prompts:
        ids = tokenizer.encode(prompt).ids[-max(1, limit):]
        out = model.generate(torch.tensor([ids]), max_new_tokens, temperature=0.0, eos=eot)[0, len(ids):].tolist()
        answers.append(tokenizer.decode([i for i in out if i != eot]).strip())
    return answers


def instruct_examples(params: Any, splits: dict[str, list[dict[str, Any]]], tokenizer: Tokenizer
                      ) -> tuple[dict[str, list[str]], dict[str, list[tuple[list[int], list[int]]]], dict[str, int]]:
    """Prompts, (ids, labels) examples and the count dropped per split for having no room for a response."""
    eot = tokenizer.token_to_id(EOT)
    prompts = {s: [format_prompt(params.prompt_template, params.input_template, r["instruction"], r["input"])
                   for r in rs] for s, rs in splits.items()}
    examples = {s: [encode_example(p, r["output"], lambda t: tokenizer.encode(t).ids, eot, params.max_length)
                    for p, r in zip(prompts[s], splits[s], strict=True)] for s in splits}
    # an example whose prompt fills max_length has no response token left to learn from
    too_long = {s: sum(1 for _, y in ex if all(t == IGNORE for t in y)) for s, ex in examples.items()}
    examples = {s: [(x, y) for x, y in ex if any(t != IGNORE for t in y)] for s, ex in examples.items()}
    if not examples["train"] or not examples["val"]:
        raise DataFormatError(f"no train or val example fits in max_length {params.max_length} tokens")
    return prompts, examples, too_long


def instruct_loaders(examples: dict[str, list[tuple[list[int], list[int]]]], batch_size: int, seed: int,
                     pad: int) -> dict[str, DataLoader]:
    """Length-grouped batches; the train order is a function of (seed, epoch) (`LengthBatches.set_epoch`)."""
    return {s: DataLoader(InstructDataset(examples[s]), num_workers=0, collate_fn=lambda b: collate(b, pad),
                          generator=own_generator(seed),
                          batch_sampler=LengthBatches([len(x) for x, _ in examples[s]], batch_size, seed,
                                                      shuffle=s == "train"))
            for s in ("train", "val")}


def export_instruct(body: Any, tokenizer: Tokenizer, params: Any, items: list[dict[str, Any]], answers: list[str],
                    out_dir: Path) -> None:
    """Weights, tokenizer, the prompt template, and the first 20 scored validation answers."""
    write_jsonl(out_dir / "samples.jsonl", ({"instruction": r["instruction"], "input": r["input"],
                                             "reference": r["output"], "generated": a}
                                            for r, a in list(zip(items, answers, strict=True))[:20]))
    save_model(body, out_dir)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "template.json").write_text(json.dumps({"prompt_template": params.prompt_template,
                                                       "input_template": params.input_template}, indent=2) + "\n")


def finetune_instruct(data_files: list[Path], pretrain_dir: Path, out_dir: Path, ckpt_dir: Path, params: Any,
                      log_fn: LogFn | None = None, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Fine-tune on prompt → response pairs, loss on responses only; score val answers by ROUGE-L.

    `ckpt_dir` holds `last.ckpt` across runs (resumed when the fingerprint matches); `callbacks` are
    added to the Trainer's own (fault injection in tests).
    """
    records = read_set(data_files)
    check_records(records, ", ".join(str(path) for path in data_files))
    splits = split_by_hash(records, params.split, params.seed)
    tokenizer, body = prepare("finetune_instruct", params, splits, pretrain_dir, out_dir)
    prompts, examples, too_long = instruct_examples(params, splits, tokenizer)
    data = instruct_loaders(examples, params.batch_size, params.seed, tokenizer.token_to_id(PAD))
    hp = SimpleNamespace(**params.model_dump(), max_steps=params.epochs * len(data["train"]))
    module = InstructModule(body.config, hp, model=body)
    epochs = EpochLog(log_fn)
    trainer = trainer_for(params, [epochs, *checkpointing(ckpt_dir), *(callbacks or [])])
    fit(trainer, module, data, ckpt_dir, fingerprint(params, data_files, pretrain_dir))
    items = splits["val"][: params.eval_items]
    answers = generate_answers(body, tokenizer, prompts["val"][: params.eval_items], params.max_new_tokens)
    references = [r["output"] for r in items]
    export_instruct(body, tokenizer, params, items, answers, out_dir)
    last = epochs.history[-1] if epochs.history else {}
    return {"train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
            "dropped_too_long": too_long,
            "rouge_l": rouge_l(references, answers), "exact_match": exact_match(references, answers),
            "eval_items": len(items), "split_sizes": {k: len(v) for k, v in splits.items()}}
