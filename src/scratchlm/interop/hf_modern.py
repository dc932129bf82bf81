"""The `modern` GPT and the Llama family on Hugging Face: Qwen3 (with QK-norm) and Llama (without), both ways.

Our modern block is the Llama/Qwen3 decoder layer: RMSNorm before attention and MLP, rotary embeddings
in the "rotate half" layout, grouped-query attention, SwiGLU, no biases, a tied head; Qwen3 adds an
RMSNorm on each head's queries and keys before the rotation, which `qk_norm` turns on. So
`Qwen3ForCausalLM` or `LlamaForCausalLM` computes our logits with our weights under its names: the
fused `c_attn` is `q_proj`, `k_proj`, `v_proj` stacked, the fused gate | up of `c_fc` is `gate_proj`
and `up_proj` stacked.

Importing reads a local folder's config.json through transformers' own config class (its defaults, its
aliases, its precedence: `rope_scaling` over `rope_parameters`), so our model is built from what
`AutoModelForCausalLM.from_pretrained` builds, and refuses, key by key on that parsed config, whatever would
make our model compute something else (scaled or partial rotary embeddings, untied heads, biases, sliding
windows, another activation); the weights' names and shapes are checked from the file header before a tensor
is read.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer

from scratchlm.model.gpt import GPT, MAX_BLOCK_SIZE, GPTConfig, mlp_hidden
from scratchlm.tokenizer import EOT, PAD

#: model_type → (transformers class, QK-norm)
MODEL_TYPES = {"qwen3": ("Qwen3ForCausalLM", True), "llama": ("LlamaForCausalLM", False)}
#: Attributes of the parsed config whose value changes the function computed, with the one value we compute
#: (an attribute the class lacks counts as that value: Llama has no `use_sliding_window`, Qwen3 no `mlp_bias`).
SUPPORTED: dict[str, Any] = {
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "use_sliding_window": False,
    "sliding_window": None,
}
#: Keys a default rotary embedding may carry (`type` is the old spelling of `rope_type`).
ROPE_KEYS = {"rope_type", "type", "rope_theta", "partial_rotary_factor"}
#: buffers some checkpoints carry that are not weights (rebuilt from the config)
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def hf_class(config: GPTConfig) -> str:
    return next(name for name, qk_norm in MODEL_TYPES.values() if qk_norm == config.qk_norm)


def modern_hf_config(model: GPT, tokenizer: Tokenizer, transformers: Any) -> Any:
    """A Qwen3Config (QK-norm) or LlamaConfig computing exactly what the modern `model` computes."""
    c = model.config
    eot, pad = tokenizer.token_to_id(EOT), tokenizer.token_to_id(PAD)
    fields = dict(
        vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=mlp_hidden(c),
        num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head or c.n_head,
        head_dim=c.head_size, hidden_act="silu", max_position_embeddings=c.block_size,
        rms_norm_eps=c.norm_eps, tie_word_embeddings=True, attention_bias=False, attention_dropout=c.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        bos_token_id=eot, eos_token_id=eot, pad_token_id=pad, architectures=[hf_class(c)])
    if c.qk_norm:
        return transformers.Qwen3Config(**fields, use_sliding_window=False)
    return transformers.LlamaConfig(**fields, mlp_bias=False)


def to_modern_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our modern weights under the Llama family's names (Qwen3's q_norm/k_norm where `qk_norm`)."""
    c = model.config
    ours = {name: t.detach() for name, t in model.state_dict().items()}
    kv_width = (c.n_kv_head or c.n_head) * c.head_size
    state = {"model.embed_tokens.weight": ours["wte.weight"], "model.norm.weight": ours["ln_f.weight"],
             "lm_head.weight": ours["wte.weight"]}
    for i in range(c.n_layer):
        block, layer = f"h.{i}", f"model.layers.{i}"
        q, k, v = ours[f"{block}.attn.c_attn.weight"].split([c.n_head * c.head_size, kv_width, kv_width], dim=0)
        gate, up = ours[f"{block}.mlp.c_fc.weight"].chunk(2, dim=0)
        state |= {
            f"{layer}.input_layernorm.weight": ours[f"{block}.ln_1.weight"],
            f"{layer}.self_attn.q_proj.weight": q, f"{layer}.self_attn.k_proj.weight": k,
            f"{layer}.self_attn.v_proj.weight": v,
            f"{layer}.self_attn.o_proj.weight": ours[f"{block}.attn.c_proj.weight"],
            f"{layer}.post_attention_layernorm.weight": ours[f"{block}.ln_2.weight"],
            f"{layer}.mlp.gate_proj.weight": gate, f"{layer}.mlp.up_proj.weight": up,
            f"{layer}.mlp.down_proj.weight": ours[f"{block}.mlp.c_proj.weight"],
        }
        if c.qk_norm:
            state[f"{layer}.self_attn.q_norm.weight"] = ours[f"{block}.attn.q_norm.weight"]
            state[f"{layer}.self_attn.k_norm.weight"] = ours[f"{block}.attn.k_norm.weight"]
    return {name: t.contiguous() for name, t in state.items()}


# ------------------------------------------------------------------------------------------ import


def modern_config_from_hf(hf: Any, raw: dict[str, Any], source: Any) -> GPTConfig:
    """Our config from a parsed LlamaConfig or Qwen3Config (`raw`, the file's JSON, only names the key at
    fault); anything our model would compute differently is refused naming the key."""
    for key, ours in SUPPORTED.items():
        if (value := getattr(hf, key, ours)) != ours:
            raise ValueError(f"{source}: {key}={value!r} is not supported (scratchlm's modern GPT computes {ours!r})")
    if any(layer != "full_attention" for layer in getattr(hf, "layer_types", None) or []):
        raise ValueError(f"{source}: layer_types has sliding-window layers ({hf.layer_types!r}; scratchlm "
                         "attends over the full context)")
    rope = check_rope(hf, raw, source)
    heads, width = hf.num_attention_heads, hf.hidden_size
    head_dim = getattr(hf, "head_dim", None) or width // max(1, heads)  # what transformers' attention uses
    kv_heads = hf.num_key_value_heads or heads
    fields = {"vocab_size": hf.vocab_size, "n_embd": width, "n_layer": hf.num_hidden_layers, "n_head": heads,
              "block_size": min(hf.max_position_embeddings, MAX_BLOCK_SIZE),
              "dropout": hf.attention_dropout or 0.0, "bias": False, "architecture": "modern",
              "rope_theta": rope.get("rope_theta", DEFAULT_ROPE_THETA),
              "n_kv_head": None if kv_heads == heads else kv_heads, "mlp_width": hf.intermediate_size,
              "norm_eps": hf.rms_norm_eps, "qk_norm": MODEL_TYPES[hf.model_type][1],
              "head_dim": None if heads * head_dim == width else head_dim}
    try:
        return GPTConfig.from_dict(fields)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


#: transformers' own default base (`PreTrainedConfig.default_theta`) for a config that names none
DEFAULT_ROPE_THETA = 10000.0


def check_rope(hf: Any, raw: dict[str, Any], source: Any) -> dict[str, Any]:
    """The rotary parameters transformers computes with (`rope_scaling`, when the file has it, wins over
    `rope_parameters`, and a top-level `rope_theta` fills in); anything but unscaled, full-width rotary
    positions is refused naming the key the file wrote."""
    rope = getattr(hf, "rope_parameters", None) or {}
    key = "rope_scaling" if raw.get("rope_scaling") else "rope_parameters" if raw.get("rope_parameters") else None
    shown = f"{key} {rope!r}" if key else f"rope_parameters {rope!r}"
    if not isinstance(rope, dict):
        raise ValueError(f"{source}: {shown} is not supported (scratchlm computes default rotary positions only)")
    for name in ("rope_type", "type"):
        if rope.get(name, "default") != "default":
            raise ValueError(f"{source}: {shown}: {name}={rope[name]!r} is not supported (scratchlm computes "
                             "default rotary positions only)")
    if unknown := sorted(set(rope) - ROPE_KEYS):
        raise ValueError(f"{source}: {shown}: {unknown[0]} is not supported (scratchlm computes default rotary "
                         "positions only)")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"{source}: {shown}: partial_rotary_factor={rope['partial_rotary_factor']!r} is not "
                         "supported (scratchlm rotates every dimension of a head)")
    theta = rope.get("rope_theta", DEFAULT_ROPE_THETA)
    if isinstance(theta, bool) or not isinstance(theta, int | float) or not theta > 0:
        raise ValueError(f"{source}: {shown}: rope_theta={theta!r} is not a positive number")
    return rope


def modern_hf_shapes(config: GPTConfig) -> dict[str, list[int]]:
    """The Llama-family tensor names and shapes a checkpoint of `config` holds (on the meta device: no memory)."""
    with torch.device("meta"):
        state = to_modern_state(GPT(config))
    return {name: list(t.shape) for name, t in state.items() if name != "lm_head.weight"}


def modern_names(found: dict[str, list[int]]) -> dict[str, list[int]]:
    """A checkpoint's tensors without the tied head and the rotary buffers (what `modern_hf_shapes` lists)."""
    return {name: shape for name, shape in found.items()
            if name != "lm_head.weight" and not name.endswith(IGNORED_SUFFIXES)}


def from_modern_state(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Llama-family names to ours: q, k, v stacked into c_attn, gate and up into c_fc."""
    hf = {name: t.float() for name, t in state.items()}
    ours = {"wte.weight": hf["model.embed_tokens.weight"], "ln_f.weight": hf["model.norm.weight"]}
    for i in range(config.n_layer):
        block, layer = f"h.{i}", f"model.layers.{i}"
        ours |= {
            f"{block}.ln_1.weight": hf[f"{layer}.input_layernorm.weight"],
            f"{block}.attn.c_attn.weight": torch.cat([hf[f"{layer}.self_attn.{p}_proj.weight"] for p in "qkv"]),
            f"{block}.attn.c_proj.weight": hf[f"{layer}.self_attn.o_proj.weight"],
            f"{block}.ln_2.weight": hf[f"{layer}.post_attention_layernorm.weight"],
            f"{block}.mlp.c_fc.weight": torch.cat([hf[f"{layer}.mlp.{p}_proj.weight"] for p in ("gate", "up")]),
            f"{block}.mlp.c_proj.weight": hf[f"{layer}.mlp.down_proj.weight"],
        }
        if config.qk_norm:
            ours[f"{block}.attn.q_norm.weight"] = hf[f"{layer}.self_attn.q_norm.weight"]
            ours[f"{block}.attn.k_norm.weight"] = hf[f"{layer}.self_attn.k_norm.weight"]
    return {name: t.contiguous() for name, t in ours.items()}
