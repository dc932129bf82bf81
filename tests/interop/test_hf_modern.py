"""The modern architecture and the Llama family: export as Qwen3 or Llama, import either, refusals by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from model_dirs import SAMPLE, TEXTS, make_model_dir
from tokenizers import Tokenizer

from scratchlm.generate import load_for_generation
from scratchlm.interop.hf import export_hf, import_hf
from scratchlm.model.gpt import load_model
from scratchlm.tokenizer import EOT, PAD, train_bpe

transformers = pytest.importorskip("transformers")


def sample_ids(tokenizer: Tokenizer) -> torch.Tensor:
    ids = tokenizer.encode(SAMPLE).ids
    return torch.tensor([ids[:16], ids[-16:]])


@pytest.mark.parametrize(("fields", "kind"), [
    ({}, "Qwen3ForCausalLM"),
    ({"qk_norm": False, "n_kv_head": 1, "mlp_width": 24, "norm_eps": 1e-5, "rope_theta": 500.0}, "LlamaForCausalLM"),
    ({"head_dim": 12, "n_kv_head": 1}, "Qwen3ForCausalLM"),
])
def test_modern_exports_with_our_logits_and_generations_and_imports_back(tmp_path: Path, fields: dict[str, Any],
                                                                         kind: str) -> None:
    """RoPE, RMSNorm, SwiGLU, no biases, tied head; QK-norm → Qwen3, none → Llama (here with grouped-query
    attention): transformers computes our logits and greedy tokens; import gives our config and weights back."""
    model_dir = make_model_dir(tmp_path / "ours", architecture="modern", **fields)
    export_hf(model_dir, tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours, tokenizer = load_model(model_dir).eval(), Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = sample_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, ours(ids)[0], atol=1e-5, rtol=0)
        theirs = hf_model.generate(ids[:1, :4], max_new_tokens=8, do_sample=False, pad_token_id=1)
    assert type(hf_model).__name__ == kind
    assert torch.equal(theirs, ours.generate(ids[:1, :4], 8, temperature=0))  # HF's KV cache against ours
    import_hf(tmp_path / "hf", tmp_path / "back")
    back = load_model(tmp_path / "back")
    assert back.config.architecture == "modern" and back.config.qk_norm == ours.config.qk_norm
    assert (back.config.n_kv_head, back.config.norm_eps, back.config.rope_theta) == \
        (ours.config.n_kv_head, ours.config.norm_eps, ours.config.rope_theta)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def llama_family_checkpoint(root: Path, model_type: str, **changes: Any) -> tuple[Any, Tokenizer]:
    """A small open model's shape as transformers writes it: grouped-query attention, its own MLP width and
    epsilon, rope_theta, tied head, a tokenizer with <|endoftext|> and no <|pad|> (as SmolLM2's)."""
    tokenizer = train_bpe(TEXTS, 300, 1, [EOT])
    fields = dict(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                  rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, tie_word_embeddings=True,
                  **changes)
    config = transformers.Qwen3Config(**fields) if model_type == "qwen3" else transformers.LlamaConfig(**fields)
    torch.manual_seed(1)
    hf_model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norms away from 1, so a lost or misplaced gain would show
        for name, param in hf_model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.2)
    hf_model.save_pretrained(root)
    tokenizer.save(str(root / "tokenizer.json"))
    return hf_model, tokenizer


@pytest.mark.parametrize(("model_type", "head_dim"), [("llama", 8), ("qwen3", 16)])
def test_import_a_llama_family_model_adds_pad_and_keeps_logits(tmp_path: Path, model_type: str, head_dim: int) -> None:
    """Llama with heads of hidden / heads; Qwen3 with wider heads than that (as Qwen3-0.6B's 128 for 1024 / 16)."""
    hf_model, tokenizer = llama_family_checkpoint(tmp_path / "hf", model_type, head_dim=head_dim)
    import_hf(tmp_path / "hf", tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    c = ours.config
    assert (c.architecture, c.n_kv_head, c.mlp_width, c.norm_eps, c.rope_theta, c.block_size, c.qk_norm) == \
        ("modern", 2, 48, 1e-5, 100000.0, 64, model_type == "qwen3")
    assert c.head_size == head_dim and (c.head_dim is None) == (head_dim == 8)
    vocab = tokenizer.get_vocab_size()
    imported = Tokenizer.from_file(str(tmp_path / "ours" / "tokenizer.json"))
    assert imported.token_to_id(PAD) == vocab and c.vocab_size == vocab + 1  # the fine-tunes pad with it
    load_for_generation(tmp_path / "ours")  # a complete scratchlm model folder
    ids = sample_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0][..., :vocab], hf_model(ids).logits, atol=1e-5, rtol=0)


def write_llama_config(hf_dir: Path, change: dict[str, Any]) -> None:
    hf_dir.mkdir()
    config = {"model_type": "llama", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 48,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "tie_word_embeddings": True}
    (hf_dir / "config.json").write_text(json.dumps({k: v for k, v in {**config, **change}.items() if v is not None}))
    train_bpe(TEXTS, 300, 1, [EOT]).save(str(hf_dir / "tokenizer.json"))


@pytest.mark.parametrize(("change", "message"), [
    ({"tie_word_embeddings": None}, "tie_word_embeddings=False is not supported"),  # transformers' default
    ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
    ({"attention_bias": True}, "attention_bias=True is not supported"),
    ({"mlp_bias": True}, "mlp_bias=True is not supported"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 32}}, "rope_scaling .*: rope_type='llama3' is not supported"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0}},
     "rope_parameters .*: rope_type='yarn' is not supported"),
    ({"rope_parameters": {"rope_type": "default"}, "rope_scaling": {"rope_type": "linear", "factor": 4}},
     "rope_scaling .*'factor': 4.*: rope_type='linear' is not supported"),  # transformers lets rope_scaling win
    ({"head_dim": 7}, "transformers cannot read it .*RoPE requires an even rotary dimension"),
    ({"model_type": "qwen3", "use_sliding_window": True}, "use_sliding_window=True is not supported"),
    ({"layer_types": ["full_attention", "sliding_attention"]}, "layer_types has sliding-window layers"),
    ({"num_key_value_heads": 3}, "n_kv_head: 3 must divide n_head 4"),
    ({"hidden_size": "wide"}, r"transformers cannot read it \(Validation error for field 'hidden_size'"),
    ({"auto_map": {"AutoModelForCausalLM": "modeling.Custom"}}, "auto_map is not supported"),
    ({"quantization_config": {"quant_method": "fp8"}}, "quantization_config is not supported"),
    ({"model_type": "mistral"}, "model_type is 'mistral'; only gpt2, qwen3, llama"),
])
def test_import_refuses_llama_configs_we_cannot_compute(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    write_llama_config(tmp_path / "hf", change)
    with pytest.raises(ValueError, match=message) as error:
        import_hf(tmp_path / "hf", tmp_path / "ours")
    assert "config.json" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "ours").exists()


def test_import_checks_llama_weights_against_the_config_before_reading_them(tmp_path: Path) -> None:
    llama_family_checkpoint(tmp_path / "hf", "llama")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 4}))
    with pytest.raises(ValueError, match=r"config.json does not match the weights \(model.layers.0.self_attn.k_proj"
                                         r".weight: config.json gives \[32, 32\], the weights have \[16, 32\]\)"):
        import_hf(tmp_path / "hf", tmp_path / "ours")
    assert not (tmp_path / "ours").exists()
