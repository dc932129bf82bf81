"""The optimizers: Muon on the blocks' matrices, AdamW on the rest, one optimizer to Lightning."""

from __future__ import annotations

import copy

import torch

from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.training.optim import MuonAdamW, build_optimizer

TINY = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, architecture="modern")


def steps(model: GPT, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]) -> list[float]:
    losses = []
    for batch in batches:
        optimizer.zero_grad()
        loss = model(batch[:, :-1], batch[:, 1:])[1]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest() -> None:
    model = GPT(GPTConfig(**TINY))
    optimizer = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), fused=False)
    assert isinstance(optimizer, MuonAdamW)
    on_muon = {id(p) for group in optimizer.muon.param_groups for p in group["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in on_muon}
    assert names == {f"h.{i}.{part}.weight" for i in range(2) for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                          "mlp.c_proj")}
    total = sum(len(group["params"]) for group in optimizer.param_groups)
    assert total == len({id(p) for p in model.parameters()})  # every parameter once, the tied head included


def test_muon_learns_and_resumes_from_its_state_dict_exactly() -> None:
    torch.manual_seed(0)
    batches = [torch.randint(0, 64, (4, 17)) for _ in range(6)]
    model = GPT(GPTConfig(**TINY))
    optimizer = build_optimizer(model, "muon", 3e-3, 0.1, (0.9, 0.95), fused=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))  # scales both parts
    losses = steps(model, optimizer, [batches[0]] * 20)
    assert losses[-1] < losses[0] - 1.0, losses
    schedule.step()
    assert {group["lr"] for group in optimizer.param_groups} == {1.5e-3}
    assert optimizer.muon.param_groups[0]["lr"] == optimizer.adamw.param_groups[0]["lr"] == 1.5e-3

    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_state = copy.deepcopy(optimizer.state_dict())  # as a checkpoint holds it (the live one changes)
    reference = steps(model, optimizer, batches)
    resumed_model = GPT(GPTConfig(**TINY))
    resumed_model.load_state_dict(saved_model)
    resumed = build_optimizer(resumed_model, "muon", 3e-3, 0.1, (0.9, 0.95), fused=False)
    resumed.load_state_dict(saved_state)
    assert resumed.muon.param_groups[0]["lr"] == 1.5e-3 and resumed.adamw.state is resumed.state
    assert steps(resumed_model, resumed, batches) == reference
