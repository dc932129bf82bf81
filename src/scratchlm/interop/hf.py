"""Hugging Face interoperability: our checkpoints to `transformers` folders and back.

The `gpt2` architecture is GPT-2's (this file); the `modern` one is the Llama family's, exported as
Qwen3 or Llama and imported from either (`hf_modern`).

Our GPT is GPT-2's architecture (learned positions, pre-LayerNorm, tanh GELU, 1/sqrt(head_dim) attention
scaling, LayerNorm eps 1e-5, tied head), so the conversion is a renaming plus two details: HF GPT-2 keeps
its projections in `Conv1D` modules whose weights are the transpose of `nn.Linear`'s, and it always has
biases, so a `bias: false` model is exported with zero biases (which compute the same function).

`export_hf` needs `transformers` (it writes what `save_pretrained` writes, so any `transformers` can read
it). `import_hf` needs it too, for config.json alone: the folder's config is read by transformers' own config
class, so our model is built from what `AutoModelForCausalLM.from_pretrained` would build (its defaults, its
aliases such as GPT-2's `num_attention_heads` for `n_head`, its precedence between keys), never from a second
reading of the JSON; the weights are read by us (safetensors, or a `.bin` through
`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from scratchlm.interop.hf_modern import (
    MODEL_TYPES,
    from_modern_state,
    modern_config_from_hf,
    modern_hf_shapes,
    modern_names,
)
from scratchlm.io import atomic_output_dir
from scratchlm.lineage.guard import guard_out_dir, write_marker
from scratchlm.model.gpt import GPT, GPTConfig, expected_shapes, load_model, read_config, save_model
from scratchlm.tokenizer import EOT, PAD, load_tokenizer

#: Weights that HF GPT-2 stores in Conv1D layout (in_features, out_features).
CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
#: The causal-mask buffers older GPT-2 checkpoints carry; they are not weights.
MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
#: GPT-2 config keys whose value changes the function computed, with the values our GPT computes
#: (and GPT-2's defaults, used when a config.json leaves a key out).
SUPPORTED: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "activation_function": ("gelu_new", ("gelu_new", "gelu_pytorch_tanh")),
    "layer_norm_epsilon": (1e-5, (1e-5,)),
    "scale_attn_weights": (True, (True,)),
    "scale_attn_by_inverse_layer_idx": (False, (False,)),
    "add_cross_attention": (False, (False,)),
    "tie_word_embeddings": (True, (True,)),
}


# ------------------------------------------------------------------------------------------ export


def export_hf(model_dir: Path, out_dir: Path) -> None:
    """Write `out_dir` as a `transformers` checkpoint (`GPT2LMHeadModel`; for the modern architecture
    `Qwen3ForCausalLM`, or `LlamaForCausalLM` without QK-norm; + fast tokenizer).

    It loads with `AutoModelForCausalLM.from_pretrained(out_dir)` / `AutoTokenizer.from_pretrained(out_dir)`
    and gives our logits. A classifier export (config.json with a "head" key) is refused: GPT-2 has no
    matching head, and exporting only the body would silently drop the fine-tuned classifier.
    """
    guard_out_dir(out_dir, [model_dir], "export")
    model, tokenizer = _load_language_model(model_dir)
    transformers = _transformers()
    if model.config.architecture == "modern":
        from scratchlm.interop.hf_modern import hf_class, modern_hf_config, to_modern_state

        kind = hf_class(model.config)
        hf_model = getattr(transformers, kind)(modern_hf_config(model, tokenizer, transformers)).eval()
        hf_model.load_state_dict(to_modern_state(model), strict=True)
    else:
        hf_model = transformers.GPT2LMHeadModel(hf_config(model, tokenizer)).eval()
        hf_model.load_state_dict(to_hf_state(model), strict=True)
        kind = "GPT2LMHeadModel"
    with atomic_output_dir(out_dir) as tmp:
        hf_model.save_pretrained(tmp)
        hf_tokenizer(model_dir / "tokenizer.json", model.config.block_size).save_pretrained(tmp)
        portable_tokenizer_class(tmp / "tokenizer_config.json")
        write_marker(tmp, "export", model_dir, {"format": f"hf ({kind})"})


def _load_language_model(model_dir: Path) -> tuple[GPT, Tokenizer]:
    """Our model and tokenizer, with a one-line error for a missing file or a classifier folder."""
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir}: missing {name} (not an exported scratchlm model)")
    if "head" in read_config(model_dir):
        raise ValueError(f"{model_dir / 'config.json'}: has a 'head' key (a classifier); only language models "
                         "can be exported (export the pretrained model it was fine-tuned from)")
    return load_model(model_dir).eval(), load_tokenizer(model_dir / "tokenizer.json")


class MissingDependency(ImportError, ValueError):
    """An optional package a command needs is not installed (a ValueError too: the CLI prints it in one line)."""


def _transformers(purpose: str = "exporting to Hugging Face format") -> Any:
    """`transformers`, imported only here: it is an optional dependency."""
    try:
        import transformers
    except ImportError:
        raise MissingDependency(f"{purpose} needs transformers: pip install transformers") from None
    return transformers


def hf_config(model: GPT, tokenizer: Tokenizer) -> Any:
    """A GPT2Config computing exactly what `model` computes (dropout only matters in training)."""
    c = model.config
    eot, pad = tokenizer.token_to_id(EOT), tokenizer.token_to_id(PAD)
    return _transformers().GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        n_inner=4 * c.n_embd, activation_function="gelu_new", layer_norm_epsilon=model.ln_f.eps,
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False, tie_word_embeddings=True,
        bos_token_id=eot, eos_token_id=eot, pad_token_id=pad, architectures=["GPT2LMHeadModel"])


def to_hf_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under HF GPT-2's names: Linear weights transposed to Conv1D's, zero biases where we have none."""
    state = {f"transformer.{name}": (t.t() if name.endswith(CONV1D) else t).detach().contiguous()
             for name, t in model.state_dict().items() if name != "lm_head.weight"}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is None and name != "lm_head":
            width = module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[0]
            state[f"transformer.{name}.bias"] = torch.zeros(width, dtype=module.weight.dtype)
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def hf_tokenizer(tokenizer_file: Path, block_size: int) -> Any:
    """Our tokenizer.json as a `PreTrainedTokenizerFast` with its special tokens named."""
    tokenizer = load_tokenizer(tokenizer_file)
    specials: dict[str, str] = {}
    if tokenizer.token_to_id(EOT) is not None:
        specials |= {"bos_token": EOT, "eos_token": EOT}
    if tokenizer.token_to_id(PAD) is not None:
        specials["pad_token"] = PAD
    return _transformers().PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), model_max_length=block_size,
                                                   **specials)


def portable_tokenizer_class(config_file: Path) -> None:
    """Name the class `PreTrainedTokenizerFast`: transformers 4 and 5 both load that name (5 writes
    `TokenizersBackend`, which 4 does not know), and it is the same class in 5."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ import


def import_hf(hf_dir: Path, out_dir: Path) -> None:
    """Turn a local GPT-2, Llama or Qwen3 checkpoint into a scratchlm model folder (the fine-tunes' `pretrained`).

    Writes `model.safetensors` + `config.json` (via `save_model`) + `tokenizer.json`. The fine-tunes pad
    with `<|pad|>`, which GPT-2's tokenizer lacks: it is added as a special token and, if its id falls
    outside the embedding, the (tied) embedding grows by rows set to the mean embedding, so every other
    token's logits are unchanged and the new token starts as an average, unremarkable one.
    GPT-2: dropout becomes `resid_pdrop` (0.1 for the released models); biases are kept. Llama and Qwen3
    become the `modern` architecture (see `hf_modern` for what is refused).
    """
    guard_out_dir(out_dir, [hf_dir], "import-hf")
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{hf_dir}: missing config.json (not a Hugging Face checkpoint)")
    raw, hf = read_hf_config(hf_dir)
    gpt2 = hf.model_type == "gpt2"
    config = gpt_config_from_hf(hf, config_file) if gpt2 else modern_config_from_hf(hf, raw, config_file)
    tokenizer = tokenizer_from_hf(hf_dir)
    if gpt2:
        expected = expected_shapes(lambda: GPT(config))
        weights = read_hf_weights(hf_dir, lambda found: match_shapes(hf_dir, gpt2_names(found), expected))
        state = from_hf_state(check_tied_head(weights, hf_dir))
    else:
        expected = modern_hf_shapes(config)
        weights = read_hf_weights(hf_dir, lambda found: match_shapes(hf_dir, modern_names(found), expected))
        state = from_modern_state(check_tied_head(weights, hf_dir), config)
    model = load_state(GPT(config), state, hf_dir)
    model = grow_vocab(model, tokenizer.get_vocab_size(with_added_tokens=True), hf_dir)
    with atomic_output_dir(out_dir) as tmp:
        save_model(model, tmp)
        tokenizer.save(str(tmp / "tokenizer.json"))
        write_marker(tmp, "import-hf", hf_dir)


def read_hf_config(hf_dir: Path) -> tuple[dict[str, Any], Any]:
    """config.json as JSON (for one-line errors and to name a key) and as transformers reads it: the class
    its `model_type` names, from the local folder only, without remote code; what no transformers model
    of that class computes as written (custom code, quantized weights) is refused."""
    config_file = hf_dir / "config.json"
    raw = read_config(hf_dir)
    if raw.get("model_type") not in ("gpt2", *MODEL_TYPES):
        known = ", ".join(["gpt2", *MODEL_TYPES])
        raise ValueError(f"{config_file}: model_type is {raw.get('model_type')!r}; only {known} checkpoints can be "
                         "imported")
    for key, why in (("auto_map", "it names custom modelling code, which scratchlm neither runs nor matches"),
                     ("quantization_config", "scratchlm reads full-precision weights only")):
        if raw.get(key):
            raise ValueError(f"{config_file}: {key} is not supported ({why})")
    transformers = _transformers("import-hf reads config.json with transformers' own config classes; it")
    logging, verbosity = transformers.utils.logging, transformers.utils.logging.get_verbosity()
    logging.set_verbosity_error()  # its warnings (GPT-2's default token ids past a small vocabulary) are noise here
    try:
        hf = transformers.AutoConfig.from_pretrained(str(hf_dir), local_files_only=True, trust_remote_code=False)
    except Exception as error:  # transformers raises many kinds (its strict field checks are no ValueError)
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
        raise ValueError(f"{config_file}: transformers cannot read it ({reason})") from None
    finally:
        logging.set_verbosity(verbosity)
    return raw, hf


def gpt_config_from_hf(hf: Any, source: Path) -> GPTConfig:
    """Our config from a parsed GPT2Config; anything our GPT would compute differently is refused by key."""
    for key, (_, allowed) in SUPPORTED.items():
        if (value := getattr(hf, key, allowed[0])) not in allowed:
            raise ValueError(f"{source}: {key}={value!r} is not supported (scratchlm's GPT computes {allowed[0]!r})")
    if hf.n_inner not in (None, 4 * hf.n_embd):
        raise ValueError(f"{source}: n_inner={hf.n_inner} is not supported (scratchlm's MLP is 4 * n_embd wide)")
    fields = {"vocab_size": hf.vocab_size, "block_size": hf.n_positions, "n_layer": hf.n_layer, "n_head": hf.n_head,
              "n_embd": hf.n_embd, "dropout": hf.resid_pdrop, "bias": True}
    try:
        return GPTConfig.from_dict(fields)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def read_hf_weights(hf_dir: Path, check: Callable[[dict[str, list[int]]], None]) -> dict[str, torch.Tensor]:
    """model.safetensors (`check` given the header's names and shapes before any tensor is read), else
    pytorch_model.bin loaded with `weights_only=True`: a pickle holding anything but tensors is refused and
    nothing in it runs."""
    import pickle

    from safetensors import SafetensorError, safe_open

    safetensors_file, bin_file = hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin"
    if safetensors_file.is_file():
        try:
            with safe_open(str(safetensors_file), framework="pt") as handle:
                check({n: list(handle.get_slice(n).get_shape()) for n in handle.keys()})  # noqa: SIM118
                return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{safetensors_file}: unreadable weights ({str(error).splitlines()[0]})") from None
    if bin_file.is_file():
        try:
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(f"{bin_file}: refused, it holds pickled objects other than tensors; nothing in it was "
                             "run (convert the checkpoint to model.safetensors)") from None
        except (OSError, RuntimeError, EOFError) as error:
            raise ValueError(f"{bin_file}: unreadable weights ({str(error).splitlines()[0]})") from None
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError(f"{bin_file}: not a state dict of tensors")
        check({name: list(t.shape) for name, t in state.items()})
        return state
    raise FileNotFoundError(f"{hf_dir}: no model.safetensors or pytorch_model.bin (sharded checkpoints are "
                            "not supported)")


#: Where each layout keeps the token embedding a tied head shares.
EMBEDDINGS = ("model.embed_tokens.weight", "transformer.wte.weight", "wte.weight")


def check_tied_head(state: dict[str, torch.Tensor], hf_dir: Path) -> dict[str, torch.Tensor]:
    """`state`, unless it carries an `lm_head.weight` other than its token embedding: transformers then
    leaves the head untied (whatever tie_word_embeddings says), and our head is always the embedding."""
    embedding = next((name for name in EMBEDDINGS if name in state), None)
    head = state.get("lm_head.weight")
    if head is not None and embedding is not None and not torch.equal(head, state[embedding]):
        raise ValueError(f"{hf_dir}: the weights' lm_head.weight differs from {embedding}, so transformers "
                         "unties the head (whatever tie_word_embeddings says); scratchlm's head is the embedding")
    return state


def gpt2_names(found: dict[str, list[int]]) -> dict[str, list[int]]:
    """HF GPT-2 tensor shapes under our names (Conv1D transposed), without the tied head and mask buffers."""
    ours = {}
    for name, shape in found.items():
        name = name.removeprefix("transformer.")
        if name == "lm_head.weight" or MASK_BUFFER.match(name):
            continue
        ours[name] = shape[::-1] if name.endswith(CONV1D) else shape
    return ours


def match_shapes(hf_dir: Path, ours: dict[str, list[int]], expected: dict[str, list[int]]) -> None:
    """The checkpoint's tensors against what config.json gives: the first difference is a one-line error."""
    for name in sorted(expected.keys() | ours.keys()):
        if expected.get(name) != ours.get(name):
            have = f"the weights have {ours[name]}" if name in ours else "the weights lack it"
            want = f"config.json gives {expected[name]}" if name in expected else "config.json has no such tensor"
            raise ValueError(f"{hf_dir}: config.json does not match the weights ({name}: {want}, {have})")


def from_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF GPT-2 names (with or without the `transformer.` prefix) to ours; Conv1D weights transposed back."""
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix("transformer.")
        if name == "lm_head.weight" or MASK_BUFFER.match(name):
            continue  # the head is tied to wte (tie_word_embeddings is checked); masks are rebuilt
        ours[name] = (tensor.t() if name.endswith(CONV1D) else tensor).float().contiguous()
    return ours


def load_state(model: GPT, state: dict[str, torch.Tensor], source: Path) -> GPT:
    """`model` with `state` loaded strictly (head tied to wte); a mismatch is a one-line error naming `source`."""
    if "wte.weight" not in state:
        raise ValueError(f"{source}: the weights have no token embedding")
    try:
        model.load_state_dict({**state, "lm_head.weight": state["wte.weight"]}, strict=True)
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1].strip()
        raise ValueError(f"{source}: config.json does not match the weights ({last})") from None
    return model


def tokenizer_from_hf(hf_dir: Path) -> Tokenizer:
    """tokenizer.json, else vocab.json + merges.txt as GPT-2's byte-level BPE; `<|pad|>` added if missing."""
    vocab, merges = hf_dir / "vocab.json", hf_dir / "merges.txt"
    if (hf_dir / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(hf_dir / "tokenizer.json")
    elif vocab.is_file() and merges.is_file():
        try:
            tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{hf_dir}: vocab.json + merges.txt are not a readable BPE ({reason})") from None
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        raise FileNotFoundError(f"{hf_dir}: no tokenizer.json (or vocab.json + merges.txt) to import")
    if tokenizer.token_to_id(EOT) is None:
        raise ValueError(f"{hf_dir}: the tokenizer has no {EOT} token (scratchlm ends documents with it)")
    tokenizer.add_special_tokens([EOT, PAD])  # EOT exists already (now marked special); PAD is new if missing
    return tokenizer


def grow_vocab(model: GPT, vocab_size: int, source: Path) -> GPT:
    """The model with its tied embedding grown to `vocab_size` rows, new rows set to the mean embedding."""
    old = model.config.vocab_size
    if vocab_size <= old:
        return model
    if vocab_size > old + 1:
        raise ValueError(f"{source}: the tokenizer has {vocab_size} ids but the model only {old} embeddings")
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    wte = state["wte.weight"]
    state["wte.weight"] = torch.cat([wte, wte.mean(0, keepdim=True).expand(vocab_size - old, -1)])
    return load_state(GPT(dataclasses.replace(model.config, vocab_size=vocab_size)), state, source)
