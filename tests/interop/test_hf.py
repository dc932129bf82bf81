"""Hugging Face interoperability: export to transformers GPT-2 and import back, checked with transformers itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from model_dirs import SAMPLE, TEXTS, make_model_dir
from tokenizers import Tokenizer
from typer.testing import CliRunner

from scratchlm.cli import app
from scratchlm.generate import load_for_generation
from scratchlm.interop.hf import export_hf, import_hf
from scratchlm.model.gpt import load_model
from scratchlm.tokenizer import EOT, PAD, train_bpe

transformers = pytest.importorskip("transformers")

def sample_ids(tokenizer: Tokenizer) -> torch.Tensor:
    ids = tokenizer.encode(SAMPLE).ids
    return torch.tensor([ids[:16], ids[-16:]])


@pytest.mark.parametrize("bias", [True, False])
def test_export_loads_in_transformers_with_our_logits_and_ids(tmp_path: Path, bias: bool) -> None:
    model_dir = make_model_dir(tmp_path / "ours", bias=bias)
    export_hf(model_dir, tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours, tokenizer = load_model(model_dir).eval(), Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = sample_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, ours(ids)[0], atol=1e-5, rtol=0)
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    assert hf_tokenizer(SAMPLE)["input_ids"] == tokenizer.encode(SAMPLE).ids
    assert hf_tokenizer.decode(tokenizer.encode("the cat sat").ids) == "the cat sat"
    assert (hf_tokenizer.eos_token, hf_tokenizer.bos_token, hf_tokenizer.pad_token) == (EOT, EOT, PAD)
    config = hf_model.config
    assert (config.n_positions, config.n_layer, config.n_head, config.n_embd) == (16, 2, 2, 16)
    assert (config.resid_pdrop, config.eos_token_id, config.pad_token_id) == (0.1, 0, 1)
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["tokenizer_class"] == \
        "PreTrainedTokenizerFast"


def test_export_then_import_round_trips_weights_config_and_tokenizer(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "ours")
    export_hf(model_dir, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    original, back = load_model(model_dir), load_model(tmp_path / "back")
    assert back.config == original.config
    for name, tensor in original.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    back_tokenizer = Tokenizer.from_file(str(tmp_path / "back" / "tokenizer.json"))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert back_tokenizer.encode(SAMPLE).ids == tokenizer.encode(SAMPLE).ids
    assert back_tokenizer.get_vocab(with_added_tokens=True) == tokenizer.get_vocab(with_added_tokens=True)


def test_export_without_biases_imports_as_zero_biases_with_equal_logits(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "ours", bias=False)
    export_hf(model_dir, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    original, back = load_model(model_dir).eval(), load_model(tmp_path / "back").eval()
    assert back.config.bias and not back.h[0].attn.c_attn.bias.any() and not back.ln_f.bias.any()
    ids = sample_ids(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
    with torch.no_grad():
        torch.testing.assert_close(back(ids)[0], original(ids)[0], atol=1e-6, rtol=0)


def gpt2_style_checkpoint(root: Path) -> tuple[object, Tokenizer]:
    """A transformers GPT-2 whose tokenizer, like GPT-2's, has <|endoftext|> but no <|pad|>."""
    tokenizer = train_bpe(TEXTS, 300, 1, [EOT])
    torch.manual_seed(1)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=tokenizer.get_vocab_size(), n_positions=16, n_embd=16, n_layer=2, n_head=2)).eval()
    hf_model.save_pretrained(root)
    tokenizer.save(str(root / "tokenizer.json"))
    return hf_model, tokenizer


def test_import_gpt2_adds_pad_and_keeps_logits(tmp_path: Path) -> None:
    hf_model, tokenizer = gpt2_style_checkpoint(tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    imported = Tokenizer.from_file(str(tmp_path / "ours" / "tokenizer.json"))
    vocab = tokenizer.get_vocab_size()
    assert imported.token_to_id(PAD) == vocab and ours.config.vocab_size == vocab + 1  # the fine-tunes need it
    load_for_generation(tmp_path / "ours")  # a complete scratchlm model folder
    assert imported.encode(SAMPLE).ids == tokenizer.encode(SAMPLE).ids
    torch.testing.assert_close(ours.wte.weight[vocab], ours.wte.weight[:vocab].mean(0))
    assert ours.config.dropout == pytest.approx(0.1)  # GPT-2's resid_pdrop
    ids = sample_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0][..., :vocab], hf_model(ids).logits, atol=1e-5, rtol=0)


def test_import_reads_a_bin_checkpoint_and_vocab_merges_files(tmp_path: Path) -> None:
    """The original GPT-2 release layout: pytorch_model.bin (no `transformer.` prefix, mask buffers), vocab+merges."""
    hf_model, tokenizer = gpt2_style_checkpoint(tmp_path / "built")
    (tmp_path / "hf").mkdir()
    shutil.copy(tmp_path / "built" / "config.json", tmp_path / "hf" / "config.json")
    state = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    state["h.0.attn.bias"] = torch.ones(1, 1, 16, 16).tril()
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    tokenizer.model.save(str(tmp_path / "hf"))  # vocab.json + merges.txt only
    import_hf(tmp_path / "hf", tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    imported = Tokenizer.from_file(str(tmp_path / "ours" / "tokenizer.json"))
    assert imported.encode(SAMPLE).ids == tokenizer.encode(SAMPLE).ids
    assert imported.token_to_id(EOT) == tokenizer.token_to_id(EOT) and imported.token_to_id(PAD) is not None
    ids = sample_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0][..., :tokenizer.get_vocab_size()], hf_model(ids).logits,
                                   atol=1e-5, rtol=0)


def test_export_refuses_a_classifier(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "classifier")
    config = json.loads((model_dir / "config.json").read_text())
    config["head"] = {"type": "classification", "labels": ["ham", "spam"], "pooling": "last_token"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: has a 'head' key \(a classifier\)") as error:
        export_hf(model_dir, tmp_path / "hf")
    assert "\n" not in str(error.value) and not (tmp_path / "hf").exists()


def test_export_and_import_refuse_to_overwrite_their_input(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "ours")
    before = (model_dir / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"--out .*ours is the export source .*ours: it would be replaced"):
        export_hf(model_dir, model_dir)
    with pytest.raises(ValueError, match=r"--out .*ours is the import-hf source .*ours: it would be replaced"):
        import_hf(model_dir, tmp_path / "ours" / ".." / "ours")
    assert (model_dir / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(("change", "message"), [
    ({"model_type": "mistral"}, "model_type is 'mistral'; only gpt2, qwen3, llama"),
    ({"activation_function": "relu"}, "activation_function='relu' is not supported"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True is not supported"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon=1e-06 is not supported"),
    ({"n_inner": 7}, "n_inner=7 is not supported"),
    ({"num_attention_heads": 3}, "n_embd: 16 is not divisible by n_head 3"),  # transformers' alias of n_head
    ({"n_embd": "wide"}, r"transformers cannot read it \(Validation error for field 'n_embd'"),
])
def test_import_refuses_configs_we_cannot_compute(tmp_path: Path, change: dict, message: str) -> None:
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    config = {"model_type": "gpt2", "vocab_size": 300, "n_positions": 16, "n_embd": 16, "n_layer": 2, "n_head": 2}
    config = {k: v for k, v in {**config, **change}.items() if v is not None}
    (hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message) as error:
        import_hf(hf_dir, tmp_path / "ours")
    assert "config.json" in str(error.value) and "\n" not in str(error.value)


def test_import_refuses_missing_files_and_mismatched_weights(tmp_path: Path) -> None:
    hf_model, _ = gpt2_style_checkpoint(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        import_hf(tmp_path / "hf", tmp_path / "ours")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "n_embd": 32}))
    train_bpe(TEXTS, 300, 1, [EOT]).save(str(tmp_path / "hf" / "tokenizer.json"))
    with pytest.raises(ValueError, match="config.json does not match the weights"):
        import_hf(tmp_path / "hf", tmp_path / "ours")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        import_hf(tmp_path / "hf", tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_cli_export_and_import_hf(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "ours")
    runner = CliRunner()
    exported = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(tmp_path / "hf"), "--format", "hf"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer_config.json").is_file()
    imported = runner.invoke(app, ["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")])
    assert imported.exit_code == 0, imported.output
    assert load_model(tmp_path / "back").config == load_model(model_dir).config
    bad_format = runner.invoke(app, ["export", "--model", str(model_dir), "--out", str(tmp_path / "x"),
                                     "--format", "onnx"])
    assert bad_format.exit_code == 1 and "--format 'onnx' is not supported" in bad_format.output
    missing = runner.invoke(app, ["import-hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1 and "missing config.json" in missing.output
