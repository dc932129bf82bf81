"""A GPT in one file of pure PyTorch (after nanoGPT and GPT-2), in two architectures.

`gpt2` (the book's): token + learned position embeddings, `n_layer` pre-LayerNorm blocks of causal
multi-head self-attention (`F.scaled_dot_product_attention`, flash/SDPA kernels where available) and a
tanh-GELU MLP, a final LayerNorm and an LM head tied to the token embedding.

`modern` (the recipe of the GPT-2 speedrun line of work and of Llama/Qwen3): no position table but
rotary embeddings on queries and keys (the Llama "rotate half" layout), RMSNorm everywhere, an
RMSNorm on each head's queries and keys before the rotation (QK-norm, as Qwen3; off for Llama), a
SwiGLU MLP, no biases; the head is still tied. Grouped-query attention (fewer key/value heads than
query heads) and the MLP width exist so that small open Llama/Qwen3 models import exactly.

Both use GPT-2's initialisation: N(0, 0.02), with the residual projections scaled by
1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth. Imports neither
Lightning nor MLflow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_BLOCK_SIZE = 1 << 16
ARCHITECTURES = ("gpt2", "modern")
NORM_EPS = 1e-6  # RMSNorm's default epsilon (`modern`), as Qwen3 sets rms_norm_eps


@dataclass
class GPTConfig:
    """The architecture; every field is stored in `config.json` next to the weights.

    Attributes:
        vocab_size: number of token ids (the tokenizer's vocabulary, specials included).
        block_size: longest context the model attends over (size of the position table).
        n_layer: transformer blocks.
        n_head: attention heads per block; must divide n_embd.
        n_embd: width of the residual stream.
        dropout: dropout on attention weights, residual branches and embeddings (0 for pretraining
            on small data is rarely right; 0.0-0.2 is usual).
        bias: biases in Linear layers and LayerNorms (GPT-2: True; a little faster without); `modern`
            has none.
        architecture: `gpt2` or `modern` (see the module's docstring).
        rope_theta: the rotary embeddings' base (`modern`; Llama's 10000).
        n_kv_head: key/value heads (`modern`; null: n_head). Fewer than n_head is grouped-query
            attention: each key/value head serves n_head / n_kv_head query heads, a smaller KV cache.
        mlp_width: the MLP's hidden width (null: 4 * n_embd for `gpt2`, 8/3 * n_embd up to a multiple
            of 32 for `modern`, the same parameters).
        norm_eps: RMSNorm's epsilon (`modern`; Qwen3 1e-6, Llama 1e-5). `gpt2`'s LayerNorm keeps 1e-5.
        qk_norm: RMSNorm on each head's queries and keys before the rotation (`modern`; Qwen3 has it,
            Llama does not).
        head_dim: the size of each attention head (`modern`; null: n_embd / n_head). Qwen3's heads are
            wider than that, so its attention projects to n_head * head_dim and back.
    """

    vocab_size: int = 50304
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    architecture: str = "gpt2"
    rope_theta: float = 10000.0
    n_kv_head: int | None = None
    mlp_width: int | None = None
    norm_eps: float = NORM_EPS
    qk_norm: bool = True
    head_dim: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field, before any weights are allocated."""
        checks = [
            (self.vocab_size >= 1, "vocab_size: must be ≥ 1"),
            (1 <= self.block_size <= MAX_BLOCK_SIZE, f"block_size: must be in [1, {MAX_BLOCK_SIZE}]"),
            (self.n_layer >= 1, "n_layer: must be ≥ 1"),
            (self.n_head >= 1, "n_head: must be ≥ 1"),
            (self.n_embd >= 1 and (self.head_dim is not None or self.n_embd % max(1, self.n_head) == 0),
             f"n_embd: {self.n_embd} is not divisible by n_head {self.n_head}"),
            (self.head_dim is None or (self.architecture == "modern" and self.head_dim >= 1),
             f"head_dim: {self.head_dim} must be ≥ 1 (and needs architecture modern)"),
            (0.0 <= self.dropout < 1.0, "dropout: must be in [0, 1)"),
            (self.architecture in ARCHITECTURES, f"architecture: {self.architecture!r} is not one of {ARCHITECTURES}"),
            (self.architecture != "modern" or self.head_size % 2 == 0,
             f"n_embd / n_head: rotary embeddings need an even head size, got {self.head_size}"),
            (self.rope_theta > 0, "rope_theta: must be > 0"),
            (self.n_kv_head is None or (self.architecture == "modern" and self.n_kv_head >= 1
                                        and self.n_head % self.n_kv_head == 0),
             f"n_kv_head: {self.n_kv_head} must divide n_head {self.n_head} (and needs architecture modern)"),
            (self.mlp_width is None or self.mlp_width >= 1, "mlp_width: must be ≥ 1"),
            (self.norm_eps > 0, "norm_eps: must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def head_size(self) -> int:
        """Each attention head's width: `head_dim`, else n_embd / n_head."""
        return self.head_dim or self.n_embd // max(1, self.n_head)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GPTConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, fields: Any) -> GPTConfig:
        """A config from config.json's fields: unknown fields and wrong types are ValueErrors naming the field."""
        if not isinstance(fields, dict):
            raise ValueError(f"expected a JSON object, got {type(fields).__name__}")
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        for name, value in fields.items():
            kind = {"dropout": (int, float), "rope_theta": (int, float), "norm_eps": (int, float), "bias": (bool,),
                    "qk_norm": (bool,), "architecture": (str,), "n_kv_head": (type(None), int),
                    "mlp_width": (type(None), int), "head_dim": (type(None), int)}.get(name, (int,))
            if not isinstance(value, kind) or (name not in ("bias", "qk_norm") and isinstance(value, bool)):
                raise ValueError(f"{name}: {value!r} is not a valid {kind[-1].__name__}")
        return cls(**fields)


def norm(config: GPTConfig, size: int) -> nn.Module:
    """LayerNorm (`gpt2`) or RMSNorm with a learned gain (`modern`)."""
    if config.architecture == "modern":
        return nn.RMSNorm(size, eps=config.norm_eps)
    return nn.LayerNorm(size, bias=config.bias)


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's angles, `(..., time, head_dim)` in Llama's layout (both halves the same)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of `(batch, head, time, head_dim)` queries or keys ("rotate half", as Llama)."""
    half = x.size(-1) // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + turned.float() * sin).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head or config.n_head
        modern = config.architecture == "modern"
        bias = config.bias and not modern
        self.head_dim = config.head_size
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=bias)
        self.c_proj.residual_scale = True  # type: ignore[attr-defined]
        qk_norm = modern and config.qk_norm
        self.q_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if qk_norm else None
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        batch, time, channels = x.shape
        kv_width = self.n_kv_head * self.head_dim
        q, k, v = self.c_attn(x).split([self.n_head * self.head_dim, kv_width, kv_width], dim=2)
        q = q.view(batch, time, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(batch, time, self.n_kv_head, self.head_dim).transpose(1, 2) for t in (k, v))
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # the cache keeps the n_kv_head heads: the point of grouping
        if self.n_kv_head != self.n_head:  # each key/value head serves a group of consecutive query heads
            k, v = (t.repeat_interleave(self.n_head // self.n_kv_head, dim=1) for t in (k, v))
        # With a cache the new queries sit at the end of the keys: a causal mask aligned to the
        # bottom-right. SDPA's is_causal aligns top-left, so build the mask when lengths differ.
        if mask is not None:  # (batch, time, time): which keys each query sees (packed sequences)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        elif k.size(2) == time:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        else:
            mask = torch.ones(time, k.size(2), dtype=torch.bool, device=x.device).tril(k.size(2) - time)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(batch, time, self.n_head * self.head_dim)
        return self.resid_dropout(self.c_proj(y))


def swiglu_width(n_embd: int) -> int:
    """The SwiGLU hidden width: 8/3 of the model's (the parameters of a 4x GELU MLP), up to a multiple of 32."""
    return -(-8 * n_embd // 3 // 32) * 32


def mlp_hidden(config: GPTConfig) -> int:
    """The MLP's hidden width: `mlp_width`, else 4x (`gpt2`) or the SwiGLU width (`modern`)."""
    return config.mlp_width or (swiglu_width(config.n_embd) if config.architecture == "modern" else 4 * config.n_embd)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gated = config.architecture == "modern"
        hidden = mlp_hidden(config)
        bias = config.bias and not self.gated
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden if self.gated else hidden, bias=bias)  # gate | up
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=bias)
        self.c_proj.residual_scale = True  # type: ignore[attr-defined]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.c_fc(x).chunk(2, dim=-1)
            return self.dropout(self.c_proj(F.silu(gate) * up))
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, mask, rope)
        return x + self.mlp(self.ln_2(x))


class KVCache:
    """Keys and values of every layer for the tokens seen so far, so generation is O(1) per layer-step."""

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].size(2)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None and old_v is not None:
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # `modern` has no position table: rotary embeddings carry the positions
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.architecture == "gpt2" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm(config, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (GPT-2, Press & Wolf 2017)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "residual_scale", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position table (the token table is the tied head)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.wpe.weight.numel() if non_embedding and self.wpe is not None else total

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6N + 12·L·T·d for attention (PaLM appendix B)."""
        c = self.config
        seq_len = seq_len or c.block_size
        return 6 * self.num_params() + 12 * c.n_layer * seq_len * c.n_embd

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final-LayerNorm output for each position (what the LM and classifier heads read).

        `positions` and `mask` (batch × time × time, True = may attend) score packed sequences: several
        continuations after one shared context in one row, each seeing the context and itself only.
        """
        start = cache.length if cache is not None else 0
        if positions is None:
            if start + idx.size(1) > self.config.block_size:
                raise ValueError(f"sequence of {start + idx.size(1)} tokens exceeds block_size "
                                 f"{self.config.block_size}")
            positions = torch.arange(start, start + idx.size(1), device=idx.device)
        elif positions.numel() and int(positions.max()) >= self.config.block_size:
            raise ValueError(f"position {int(positions.max())} exceeds block_size {self.config.block_size}")
        if self.wpe is not None:
            x, rope = self.drop(self.wte(idx) + self.wpe(positions)), None
        else:  # (batch, 1, time, head_dim) for per-row positions, (time, head_dim) for shared ones
            rope = rotary(positions[:, None] if positions.dim() == 2 else positions,
                          self.config.head_size, self.config.rope_theta)
            x = self.drop(self.wte(idx))
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer, mask, rope)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean cross-entropy against `targets` (-100 ignored)."""
        logits = self.lm_head(self.hidden_states(idx, cache))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def stream(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, eos: int | None = None,
               generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield one `(batch, 1)` tensor of next ids at a time, with a KV cache; stops once every row
        has produced `eos`. `temperature=0` is greedy. Past `block_size` the cache is rebuilt from the
        last `block_size - 1` tokens (a sliding window), so generation length is not capped."""
        cache = KVCache(self.config.n_layer)
        context = idx[:, -self.config.block_size:]
        logits, _ = self(context, cache=cache)
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            if eos is not None:
                next_id = torch.where(finished[:, None], torch.full_like(next_id, eos), next_id)
                finished |= next_id.squeeze(1) == eos
            yield next_id
            context = torch.cat([context, next_id], dim=1)
            if eos is not None and bool(finished.all()):
                return
            if cache.length >= self.config.block_size:
                cache = KVCache(self.config.n_layer)
                context = context[:, -(self.config.block_size - 1):]
                logits, _ = self(context, cache=cache)
            else:
                logits, _ = self(next_id, cache=cache)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The prompt followed by up to `max_new_tokens` sampled ids (see `stream`)."""
        new = list(self.stream(idx, max_new_tokens, temperature, top_k, top_p, eos, generator))
        return torch.cat([idx, *new], dim=1)


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row from the last position's logits (greedy when temperature is 0)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    # in float64 and from the max down: a temperature as small as 1e-45 gives 0 for the best id and -inf for
    # the rest (greedy), never inf - inf = NaN
    logits = logits.double()
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def save_model(model: GPT, out_dir: Path) -> None:
    """`model.safetensors` + `config.json`: no pickle anywhere, loadable without this code's classes."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(model.config.to_json(), encoding="utf-8")


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a model folder as a dict; missing or not JSON is a one-line error naming the file."""
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{model_dir}: missing config.json (not an exported scratchlm model)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


class _NoMetaNormal(torch.overrides.TorchFunctionMode):
    """Skips `nn.init.normal_` on meta tensors, which have no values to draw: torch runs it through a Python
    reference that imports torch._dynamo (over a second) for a stage that only wants shapes."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is nn.init.normal_:
            tensor = args[0] if args else kwargs["tensor"]
            if tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def build_on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` on the meta device: shapes and parameter counts, nothing allocated, no values drawn."""
    with torch.device("meta"), _NoMetaNormal():
        return build()


def expected_shapes(build: Callable[[], nn.Module],
                    tied: tuple[str, ...] = ("lm_head.weight",)) -> dict[str, list[int]]:
    """The tensor shapes a module built by `build` has, computed on the meta device: nothing is allocated,
    so a config.json claiming a 13-TB model costs nothing to check. `tied` names are not stored."""
    module = build_on_meta(build)
    return {name: list(t.shape) for name, t in module.state_dict().items() if name not in tied}


def check_weights(weights: Path, expected: dict[str, list[int]]) -> None:
    """Compare the safetensors header's tensor names and shapes with `expected`, before any tensor is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            found = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights}: unreadable weights ({str(error).strip().splitlines()[0]})") from None
    for name in sorted(expected.keys() | found.keys()):
        if expected.get(name) != found.get(name):
            have = f"the weights have {found[name]}" if name in found else "the weights lack it"
            want = f"config.json gives {expected[name]}" if name in expected else "config.json has no such tensor"
            raise ValueError(f"{weights.parent}: config.json does not match the weights ({name}: {want}, {have})")


def load_weights(weights: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a truncated or corrupt file is a one-line error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights}: unreadable weights ({str(error).strip().splitlines()[0]})") from None


def load_config(model_dir: Path, fields: dict[str, Any] | None = None) -> GPTConfig:
    """The GPTConfig of a model folder (or of `fields` read from its config.json), errors naming the file."""
    try:
        return GPTConfig.from_dict(read_config(model_dir) if fields is None else fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{model_dir / 'config.json'}: {error}") from None


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> GPT:
    """Load weights saved by `save_model`; a config that does not match the weights is an error, found
    from the file's header before the model is allocated."""
    config = load_config(model_dir)
    check_weights(model_dir / "model.safetensors", expected_shapes(lambda: GPT(config)))
    state = load_weights(model_dir / "model.safetensors", device)
    model = GPT(config)
    model.load_state_dict({**state, "lm_head.weight": state["wte.weight"]}, strict=True)
    return model.to(device)
