"""`import-hf` against transformers itself, config variant by config variant.

Each variant is a folder transformers writes (a tiny random Llama, Qwen3 or GPT-2 built from the variant's
config, every weight perturbed so an ignored bias, norm or head would show), sometimes with config.json then
edited as a user would (the old key spellings, both spellings at once, a key transformers ignores). Whatever
`AutoModelForCausalLM.from_pretrained` makes of the folder is the reference: import either refuses naming the
key, or our logits equal transformers' to 1e-5 (fp32). Each variant also says which of the two it expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from model_dirs import SAMPLE, TEXTS
from tokenizers import Tokenizer

from scratchlm.interop.hf import import_hf
from scratchlm.model.gpt import load_model
from scratchlm.tokenizer import EOT, train_bpe

transformers = pytest.importorskip("transformers")

LINEAR = {"rope_type": "linear", "factor": 4.0}
DEFAULT = {"rope_type": "default", "rope_theta": 100000.0}
MODERN = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5, rope_parameters=DEFAULT,
              tie_word_embeddings=True)
GPT2 = dict(n_positions=32, n_embd=32, n_layer=2, n_head=2)

#: (id, config changes at construction, config.json changes after saving (None removes a key),
#:  None when import must give transformers' logits, else a text the refusal must name)
BOTH: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("as-written", {}, {}, None),
    ("rope_theta-at-top-only", {}, {"rope_parameters": None, "rope_theta": 5000.0}, None),
    ("rope_theta-at-top-too", {}, {"rope_theta": 7.0}, None),  # rope_parameters' own theta wins
    ("rope_theta-int", {}, {"rope_parameters": {"rope_type": "default", "rope_theta": 20000}}, None),
    ("rope_scaling-null", {}, {"rope_scaling": None, "rope_theta": 100000.0}, None),  # as SmolLM2 and Qwen3 write it
    ("rope_scaling-old-default", {}, {"rope_parameters": None, "rope_scaling": {"type": "default"},
                                      "rope_theta": 5000.0}, None),
    ("rope_scaling-old-linear", {}, {"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 4.0}},
     "rope_scaling"),
    ("rope_scaling-linear", {}, {"rope_parameters": None, "rope_scaling": LINEAR}, "rope_scaling"),
    ("rope_parameters-linear", {"rope_parameters": {**LINEAR, "rope_theta": 1e5}}, {}, "rope_parameters"),
    ("both-default-then-linear", {}, {"rope_scaling": LINEAR}, "rope_scaling"),  # the issue's folder
    ("both-linear-then-default", {}, {"rope_parameters": {**LINEAR, "rope_theta": 1e5},
                                      "rope_scaling": {"rope_type": "default"}}, None),  # rope_scaling wins
    ("both-default-other-theta", {}, {"rope_scaling": {"rope_type": "default", "rope_theta": 500.0}}, None),
    ("rope-dynamic", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e5}}, {},
     "rope_type='dynamic'"),
    ("rope-yarn", {"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e5}}, {},
     "rope_type='yarn'"),
    ("rope-llama3", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32,
                                         "rope_theta": 1e5}}, {}, "rope_type='llama3'"),
    ("rope-partial", {}, {"rope_parameters": {**DEFAULT, "partial_rotary_factor": 0.5}}, "partial_rotary_factor"),
    ("rope-extra-key", {}, {"rope_parameters": {**DEFAULT, "factor": 4.0}}, "rope_parameters"),
    ("untied-head", {"tie_word_embeddings": False}, {}, "tie_word_embeddings=False"),
    ("tie-key-absent", {"tie_word_embeddings": False}, {"tie_word_embeddings": None}, "tie_word_embeddings=False"),
    ("attention-bias", {"attention_bias": True}, {}, "attention_bias=True"),
    ("hidden_act-gelu", {"hidden_act": "gelu"}, {}, "hidden_act='gelu'"),
    ("hidden_act-relu", {"hidden_act": "relu"}, {}, "hidden_act='relu'"),
    ("head_dim-wider", {"head_dim": 16}, {}, None),
    ("kv-heads-1", {"num_key_value_heads": 1}, {}, None),
    ("rms_norm_eps", {"rms_norm_eps": 1e-6}, {}, None),
    ("attention_dropout", {"attention_dropout": 0.1}, {}, None),
    ("max_position_embeddings-16", {"max_position_embeddings": 16}, {}, None),
    ("layer_types-sliding", {}, {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    ("custom-code", {}, {"auto_map": {"AutoModelForCausalLM": "modeling.Custom"}}, "auto_map"),
]
LLAMA = [
    ("mlp-bias", {"mlp_bias": True}, {}, "mlp_bias=True"),
    ("pretraining_tp", {"pretraining_tp": 2}, {}, None),
    ("kv-heads-absent", {"num_key_value_heads": 4}, {"num_key_value_heads": None}, None),  # Qwen3's default: 32
    ("sliding_window-key", {}, {"sliding_window": 4}, "sliding_window=4"),  # read by transformers' caches
    ("layer_types-full", {}, {"layer_types": ["full_attention", "full_attention"]}, None),
]
QWEN3 = [
    ("sliding-window", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}, {},
     "use_sliding_window=True"),
    ("sliding-window-on-no-layer", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 2}, {},
     "use_sliding_window=True"),
    ("sliding_window-while-off", {"use_sliding_window": False, "sliding_window": 4}, {}, None),
    ("layer_types-sliding-while-off", {"layer_types": ["full_attention", "sliding_attention"]}, {}, "layer_types"),
    ("head_dim-default", {"head_dim": 128}, {"head_dim": None}, None),
    ("mlp_bias-key", {}, {"mlp_bias": True}, "mlp_bias=True"),
]
GPT2_VARIANTS = [
    ("as-written", {}, {}, None),
    ("heads-under-both-names", {}, {"num_attention_heads": 4}, None),  # transformers' alias wins over n_head
    ("activation-relu", {"activation_function": "relu"}, {}, "activation_function='relu'"),
    ("activation-tanh", {"activation_function": "gelu_pytorch_tanh"}, {}, None),
    ("untied-head", {"tie_word_embeddings": False}, {}, "tie_word_embeddings=False"),
    ("scale-by-layer", {"scale_attn_by_inverse_layer_idx": True}, {}, "scale_attn_by_inverse_layer_idx=True"),
    ("unscaled-attention", {"scale_attn_weights": False}, {}, "scale_attn_weights=False"),
    ("n_inner", {"n_inner": 64}, {}, "n_inner=64"),
    ("layer_norm_epsilon", {"layer_norm_epsilon": 1e-6}, {}, "layer_norm_epsilon=1e-06"),
    ("reorder-and-upcast", {"reorder_and_upcast_attn": True}, {}, None),
]
CASES = [pytest.param(kind, *case, id=f"{kind}-{case[0]}") for kind in ("llama", "qwen3") for case in BOTH]
CASES += [pytest.param("llama", *case, id=f"llama-{case[0]}") for case in LLAMA]
CASES += [pytest.param("qwen3", *case, id=f"qwen3-{case[0]}") for case in QWEN3]
CASES += [pytest.param("gpt2", *case, id=f"gpt2-{case[0]}") for case in GPT2_VARIANTS]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_bpe(TEXTS, 300, 1, [EOT])


def checkpoint(folder: Path, kind: str, tokenizer: Tokenizer, built: dict[str, Any], edits: dict[str, Any]) -> Path:
    """What transformers writes for the variant, then config.json edited as a user would."""
    vocab = tokenizer.get_vocab_size()
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, **{**GPT2, **built})
    else:
        cls = transformers.LlamaConfig if kind == "llama" else transformers.Qwen3Config
        config = cls(vocab_size=vocab, **{**MODERN, **built})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # every weight away from its initial value: norms off 1, biases off 0, heads off the table
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    saved = json.loads((folder / "config.json").read_text())
    saved = {key: value for key, value in {**saved, **edits}.items() if value is not None or key == "rope_scaling"}
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    return folder


def sample_ids(tokenizer: Tokenizer) -> torch.Tensor:
    ids = tokenizer.encode(SAMPLE).ids
    return torch.tensor([ids[:16], ids[-16:]])


def assert_imports_as_transformers_reads(folder: Path, out: Path, tokenizer: Tokenizer, refused: str | None) -> None:
    """Refused naming `refused` (one line, naming the folder's file), or transformers' logits from our import."""
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # it accepts it
    try:
        import_hf(folder, out)
    except ValueError as error:
        message = str(error)
        assert refused is not None, f"refused a folder transformers reads: {message}"
        assert refused in message and "\n" not in message and str(folder) in message, message
        assert not out.exists()
        return
    assert refused is None, f"imported, though it should be refused naming {refused!r}"
    ours, ids, vocab = load_model(out).eval(), sample_ids(tokenizer), tokenizer.get_vocab_size()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0][..., :vocab], theirs(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "name", "built", "edits", "refused"), CASES)
def test_import_refuses_by_key_or_gives_transformers_logits(tmp_path: Path, tokenizer: Tokenizer, kind: str,
                                                            name: str, built: dict[str, Any], edits: dict[str, Any],
                                                            refused: str | None) -> None:
    folder = checkpoint(tmp_path / "hf", kind, tokenizer, built, edits)
    assert_imports_as_transformers_reads(folder, tmp_path / "ours", tokenizer, refused)


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2"])
@pytest.mark.parametrize("same", [True, False], ids=["head-equal-to-embedding", "head-of-its-own"])
def test_a_tied_checkpoint_carrying_its_own_head_is_read_as_transformers_reads_it(
        tmp_path: Path, tokenizer: Tokenizer, kind: str, same: bool) -> None:
    """tie_word_embeddings true, but the weights hold lm_head.weight: transformers ties it only when it
    equals the embedding, and otherwise computes with it; so import takes the first and refuses the second."""
    from safetensors.torch import load_file, save_file

    folder = checkpoint(tmp_path / "hf", kind, tokenizer, {}, {})
    state = load_file(str(folder / "model.safetensors"))
    embedding = state["model.embed_tokens.weight" if kind != "gpt2" else "transformer.wte.weight"]
    state["lm_head.weight"] = embedding.clone() if same else embedding + 0.1 * torch.randn_like(embedding)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    refused = None if same else "lm_head.weight differs from"
    assert_imports_as_transformers_reads(folder, tmp_path / "ours", tokenizer, refused)
