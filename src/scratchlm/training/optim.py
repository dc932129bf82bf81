"""The optimizers: AdamW alone (the book's), or Muon for the blocks' matrices with AdamW for the rest.

Muon (Jordan et al. 2024, `torch.optim.Muon`) orthogonalises each hidden weight matrix's momentum with
Newton-Schulz iterations; embeddings, the tied head, norm gains and biases stay with AdamW, as in the
GPT-2 speedrun records. With `adjust_lr_fn="match_rms_adamw"` Muon's updates have AdamW's RMS, so one
learning rate and one schedule serve both.

Lightning's automatic loop, our clipping, the LR schedule and the checkpoints want one optimizer:
`MuonAdamW` is one, whose param groups are AdamW's followed by Muon's and whose state both share
(their parameters are disjoint), so `state_dict`, `load_state_dict`, `zero_grad` and moving the state
to a device are the base class's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import AdamW, Muon, Optimizer


def adamw_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear and embedding weights), not biases or norm gains."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of what trains, each tied parameter once."""
    seen: dict[int, tuple[str, torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            seen.setdefault(id(param), (name, param))
    return list(seen.values())


def is_hidden_matrix(name: str, param: torch.nn.Parameter) -> bool:
    """Muon's: a 2-D weight inside a transformer block (not an embedding, the tied head or a classifier head)."""
    return param.dim() == 2 and (name.startswith("h.") or ".h." in name)


class MuonAdamW(Optimizer):
    """Muon for the hidden matrices and AdamW for the rest, stepped together as one optimizer."""

    def __init__(self, adamw: AdamW, muon: Muon) -> None:
        self.adamw, self.muon = adamw, muon
        super().__init__([*adamw.param_groups, *muon.param_groups], {})
        self._share()

    def _share(self) -> None:
        """The parts use this optimizer's group dicts and state (after `load_state_dict` replaced them too)."""
        count = len(self.adamw.param_groups)
        self.adamw.param_groups, self.muon.param_groups = self.param_groups[:count], self.param_groups[count:]
        self.adamw.state = self.muon.state = self.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.param_groups.append(param_group)  # the parts' groups, already complete: nothing to default

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.adamw.step()
        self.muon.step()
        return loss


def build_optimizer(model: torch.nn.Module, kind: str, lr: float, weight_decay: float,
                    betas: tuple[float, float], fused: bool) -> Optimizer:
    """`adamw`: every parameter on AdamW; `muon`: the blocks' matrices on Muon, the rest on AdamW."""
    named = trainable(model)
    if kind == "adamw":
        return AdamW(adamw_groups([p for _, p in named], weight_decay), lr=lr, betas=betas, fused=fused or None)
    hidden = [p for name, p in named if is_hidden_matrix(name, p)]
    rest = [p for name, p in named if not is_hidden_matrix(name, p)]
    adamw = AdamW(adamw_groups(rest, weight_decay), lr=lr, betas=betas, fused=fused or None)
    muon = Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    return MuonAdamW(adamw, muon)
