"""The GPT as a text classifier: a linear head on the last real token's hidden state, its inputs, loading one
exported by the finetune_classifier stage (`scratchlm.training.classifier`), and its predictions.

The GPT body reads right-padded token ids; with causal attention nothing after a position can change
it, so the hidden state of the last real token summarises the message exactly, padding or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, default_collate

from scratchlm.model.gpt import GPT


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


def load_classifier(model_dir: Any) -> tuple[GPTClassifier, list[str]]:
    """A classifier exported by the finetune_classifier stage, and its label names (no pickle).

    config.json is checked against the weights' header before anything is allocated; every bad file
    is a one-line ValueError naming it.
    """
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


def predict(model: GPTClassifier, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    preds, trues = [], []
    with torch.no_grad():
        for ids, lengths, labels in loader:
            preds.append(model(ids, lengths)[0].argmax(-1))
            trues.append(labels)
    return torch.cat(preds), torch.cat(trues)
