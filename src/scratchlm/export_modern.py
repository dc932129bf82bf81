"""The `modern` GPT as a Hugging Face Qwen3 checkpoint: the Llama family's layout with QK-norm.

Our modern block is Qwen3's decoder layer: RMSNorm before attention and MLP, per-head RMSNorm of the
queries and keys before the rotary embedding ("rotate half", as Llama), SwiGLU, no biases, a tied
head. So `Qwen3ForCausalLM` computes our logits with our weights under its names: the fused
`c_attn` split into `q_proj`, `k_proj`, `v_proj`, the fused gate | up of `c_fc` into `gate_proj` and
`up_proj`. Plain Llama has no QK-norm, so it could not.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer

from scratchlm.model.gpt import GPT, NORM_EPS, swiglu_width
from scratchlm.tokenizer import EOT, PAD

ARCHITECTURE = "Qwen3ForCausalLM"


def qwen3_config(model: GPT, tokenizer: Tokenizer, transformers: Any) -> Any:
    """A Qwen3Config computing exactly what the modern `model` computes (dropout matters only in training)."""
    c = model.config
    eot, pad = tokenizer.token_to_id(EOT), tokenizer.token_to_id(PAD)
    return transformers.Qwen3Config(
        vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=swiglu_width(c.n_embd),
        num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.n_head,
        head_dim=c.n_embd // c.n_head, hidden_act="silu", max_position_embeddings=c.block_size,
        rms_norm_eps=NORM_EPS, tie_word_embeddings=True, attention_bias=False, attention_dropout=c.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, use_sliding_window=False,
        bos_token_id=eot, eos_token_id=eot, pad_token_id=pad, architectures=[ARCHITECTURE])


def to_qwen3_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our modern weights under Qwen3's names."""
    ours = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    state = {"model.embed_tokens.weight": ours["wte.weight"], "model.norm.weight": ours["ln_f.weight"],
             "lm_head.weight": ours["wte.weight"]}
    for i in range(model.config.n_layer):
        block, layer = f"h.{i}", f"model.layers.{i}"
        q, k, v = ours[f"{block}.attn.c_attn.weight"].chunk(3, dim=0)
        gate, up = ours[f"{block}.mlp.c_fc.weight"].chunk(2, dim=0)
        state |= {
            f"{layer}.input_layernorm.weight": ours[f"{block}.ln_1.weight"],
            f"{layer}.self_attn.q_proj.weight": q.contiguous(),
            f"{layer}.self_attn.k_proj.weight": k.contiguous(),
            f"{layer}.self_attn.v_proj.weight": v.contiguous(),
            f"{layer}.self_attn.o_proj.weight": ours[f"{block}.attn.c_proj.weight"],
            f"{layer}.self_attn.q_norm.weight": ours[f"{block}.attn.q_norm.weight"],
            f"{layer}.self_attn.k_norm.weight": ours[f"{block}.attn.k_norm.weight"],
            f"{layer}.post_attention_layernorm.weight": ours[f"{block}.ln_2.weight"],
            f"{layer}.mlp.gate_proj.weight": gate.contiguous(),
            f"{layer}.mlp.up_proj.weight": up.contiguous(),
            f"{layer}.mlp.down_proj.weight": ours[f"{block}.mlp.c_proj.weight"],
        }
    return state
