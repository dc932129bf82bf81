"""Fine-tuning a tiny pretrained GPT into a classifier, for real, on a tiny separable set."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scratchlm.config.training import FinetuneClassifierParams
from scratchlm.io import DataFormatError, write_jsonl
from scratchlm.model.gpt import GPT, GPTConfig, save_model
from scratchlm.tokenizer import train_bpe
from scratchlm.training.classifier import finetune_classifier, stratified_split

pytestmark = pytest.mark.slow
HAM = ["see", "you", "at", "lunch", "tomorrow", "then", "call", "me", "when", "you", "get", "home", "ok"]
SPAM = ["win", "free", "cash", "prize", "now", "claim", "your", "urgent", "reward", "text", "stop"]


def messages(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spam = i % 5 == 0
        words = [rng.choice(SPAM if spam else HAM) for _ in range(rng.randint(4, 12))]
        out.append({"id": f"sms/{i:04d}", "text": " ".join(words), "label": "spam" if spam else "ham"})
    return out


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrained")
    tokenizer = train_bpe([r["text"] for r in messages(200)], 300, 1, ["<|endoftext|>", "<|pad|>"])
    tokenizer.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2, n_head=2,
                             n_embd=32)), root)
    return root


def params(**overrides) -> FinetuneClassifierParams:
    base = {"epochs": 4, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "max_length": 16, "precision": "32-true",
            "accelerator": "cpu", "num_threads": 1, "split": {"train": 0.6, "val": 0.2, "test": 0.2}}
    return FinetuneClassifierParams(**{**base, **overrides})


def test_learns_a_separable_set_and_beats_the_majority_baseline(pretrained: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", messages(150))
    out = tmp_path / "out"
    out.mkdir()
    logged = []
    metrics = finetune_classifier([tmp_path / "data.jsonl"], pretrained, out, tmp_path / "ckpt", params(),
                                  lambda m, step: logged.append((m, step)))
    assert metrics["test"]["accuracy"] >= 0.95 and metrics["test"]["f1"] >= 0.9
    assert metrics["baselines"]["majority"]["f1"] == 0.0
    assert metrics["baselines"]["majority"]["accuracy"] == pytest.approx(0.8)
    assert sum(map(sum, metrics["confusion"])) == metrics["split_sizes"]["test"] == 30
    assert sum(map(sum, metrics["val_confusion"])) == metrics["split_sizes"]["val"] == 30
    assert {"train_loss", "train_f1", "val_f1", "val_accuracy"} <= set(logged[-1][0])
    config = json.loads((out / "config.json").read_text())
    assert config["head"]["labels"] == ["ham", "spam"]
    assert "head.weight" in load_file(out / "model.safetensors")
    splits = [json.loads(line)["split"] for line in (out / "split.jsonl").read_text().splitlines()]
    assert splits.count("test") == 30
    from typer.testing import CliRunner

    from scratchlm.cli import app

    result = CliRunner().invoke(app, ["classify", "--model", str(out), "win free cash prize now claim"])
    assert result.exit_code == 0 and result.output.startswith("spam\t")
    result = CliRunner().invoke(app, ["classify", "--model", str(out), "see you at lunch tomorrow"])
    assert result.output.startswith("ham\t")


def test_split_is_stratified_and_seeded() -> None:
    records = messages(100)
    a = stratified_split(records, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1)
    assert a == stratified_split(list(reversed(records)), {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1)
    assert [sum(r["label"] == "spam" for r in a[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert a != stratified_split(records, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=2)


def test_a_label_outside_the_set_names_the_record(pretrained: Path, tmp_path: Path) -> None:
    records = messages(20)
    records[7]["label"] = "phishing"
    write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(DataFormatError, match=r"record 8 \(sms/0007\): label 'phishing' is not one of"):
        finetune_classifier([tmp_path / "data.jsonl"], pretrained, tmp_path, tmp_path / "ckpt",
                            params(labels=["ham", "spam"]))
    # labels: null takes the data's own labels, and a positive label for two classes then no longer fits
    with pytest.raises(DataFormatError, match=r"positive_label 'spam' is for two classes; the data has 3 "
                                              r"\(\['ham', 'phishing', 'spam'\]\): set it to null"):
        finetune_classifier([tmp_path / "data.jsonl"], pretrained, tmp_path, tmp_path / "ckpt", params())


SPORT = ["goal", "match", "team", "score", "league", "coach", "player", "season", "final", "cup", "pitch"]


def test_three_classes_with_other_names_train_with_macro_and_per_class_metrics(pretrained: Path,
                                                                               tmp_path: Path) -> None:
    rng = random.Random(3)
    words = {"chat": HAM, "offer": SPAM, "sport": SPORT}
    records = [{"id": f"r/{i:04d}", "label": label, "text": " ".join(rng.choice(words[label]) for _ in range(8))}
               for i, label in enumerate(["chat", "offer", "sport"] * 50)]
    write_jsonl(tmp_path / "a.jsonl", records[:90])
    write_jsonl(tmp_path / "b.jsonl", records[90:])  # a set of several files reads as one
    out = tmp_path / "out"
    out.mkdir()
    metrics = finetune_classifier([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], pretrained, out, tmp_path / "ckpt",
                                  params(positive_label=None, epochs=6))
    assert metrics["labels"] == ["chat", "offer", "sport"]
    test = metrics["test"]
    assert set(test["per_class"]) == {"chat", "offer", "sport"}
    assert sum(c["support"] for c in test["per_class"].values()) == metrics["split_sizes"]["test"] == 30
    assert test["f1"] == pytest.approx(sum(c["f1"] for c in test["per_class"].values()) / 3) == test["macro_f1"]
    assert test["accuracy"] >= 0.9, test
    assert metrics["baselines"]["majority"]["macro_f1"] < 0.25 and "per_class" in metrics["baselines"]["tfidf_logreg"]
    assert len(metrics["confusion"]) == 3 and json.loads((out / "config.json").read_text())["head"]["labels"] == [
        "chat", "offer", "sport"]
