"""The ladder: each rung is the configured pretraining recipe at a smaller size and a proportional budget.

A rung keeps everything of `pretrain` that is the recipe (architecture, optimizer, learning rates,
batch, context, precision, data, validation windows) and changes what the ladder is about: the model's
depth and width, and the steps, set so the tokens seen are the rung's `tokens_per_param` (else the
ladder's) times the rung's parameters (with embeddings). Rungs at two or more ratios let the fit tell
parameters from tokens (L(N, D)) and choose pretrain's size (scratchlm.scaling.choice). Nothing of a rung
comes from pretrain's size or steps (warmup is a tenth of the rung's own steps): those are what the ladder
chooses, so changing them re-runs pretrain, not the ladder (config.scaling.NOT_RUNG_RECIPE)."""

from __future__ import annotations

import math

from scratchlm.config.base import ConfigError
from scratchlm.config.scaling import ScalingRunParams
from scratchlm.config.training import PretrainParams

#: The share of a rung's steps spent warming up: its own, not pretrain's (whose steps the ladder may choose).
RUNG_WARMUP_SHARE = 0.1
#: What each rung writes and the fit reads.
RUNG_FILE = "rung.json"
#: A rung's size as every rung logs it to MLflow (`rung.<key>`), one column per key in the compare view.
RUNG_SIZE_KEYS = ("n_layer", "n_embd", "params", "tokens", "flops")


def tokens_per_step(params: PretrainParams) -> int:
    """Tokens one optimizer step consumes on one device (the ladder trains on one)."""
    return params.batch_size * params.grad_accum * params.model.block_size


def model_size(params: PretrainParams, vocab_size: int) -> tuple[int, float]:
    """(parameters with embeddings, training FLOPs per token) of the model `params` describes, on the meta
    device: nothing is allocated."""
    from scratchlm.model.gpt import GPT, GPTConfig, build_on_meta

    model = build_on_meta(lambda: GPT(GPTConfig(vocab_size=vocab_size, **params.model.gpt_fields())))
    return model.num_params(non_embedding=False), float(model.flops_per_token())


def planned_compute(params: PretrainParams, vocab_size: int) -> dict[str, float]:
    """What a pretrain run of `params` will cost, before it runs: parameters, tokens, FLOPs (`params` of a fixed
    size: with size from_ladder the ladder's choice is the plan)."""
    if params.max_steps is None:
        raise ConfigError("pretrain: model.size is from_ladder, so its cost is the ladder's choice, not a plan")
    n, per_token = model_size(params, vocab_size)
    tokens = params.max_steps * tokens_per_step(params)
    return {"params": n, "tokens": tokens, "flops": per_token * tokens, "tokens_per_param": tokens / n}


def rung_params(recipe: PretrainParams, rung: ScalingRunParams, vocab_size: int) -> PretrainParams:
    """The PretrainParams of one rung (see the module docstring)."""
    size = rung.size
    model = recipe.model.model_copy(update={"size": "fixed", "n_layer": size.n_layer, "n_head": size.n_head,
                                            "n_embd": size.n_embd})
    sized = recipe.model_copy(update={"model": model})
    n, _ = model_size(sized, vocab_size)
    ratio = size.tokens_per_param or rung.tokens_per_param
    steps = max(2, math.ceil(ratio * n / tokens_per_step(recipe)))
    warmup = min(steps - 1, round(RUNG_WARMUP_SHARE * steps))
    return PretrainParams(**{**recipe.model_dump(), "model": model.model_dump(), "max_steps": steps,
                             "warmup_steps": warmup, "val_every": steps, "ckpt_every": steps,
                             "max_time_minutes": None, "compile": rung.compile, "sample_tokens": 0,
                             "log_every": max(1, min(recipe.log_every, steps // 5))})
