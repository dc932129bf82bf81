from pathlib import Path

import pytest
import torch

from scratchlm.model.gpt import GPT, GPTConfig, KVCache, load_model, save_model

TINY = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


#: the book's GPT-2; modern as we train it (Qwen3's layout); modern as Llama imports (grouped-query
#: attention with two key/value heads for four query heads, no QK-norm, another MLP width and epsilon)
VARIANTS = {"gpt2": {"architecture": "gpt2"}, "modern": {"architecture": "modern"},
            "llama-gqa": {"architecture": "modern", "n_kv_head": 2, "qk_norm": False, "mlp_width": 40, "norm_eps": 1e-5}}


@pytest.fixture(params=list(VARIANTS))
def model(request: pytest.FixtureRequest) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY, **VARIANTS[request.param])).eval()


def test_shapes_and_loss(model: GPT) -> None:
    idx, targets = torch.randint(0, 97, (2, 3, 16))  # next tokens unrelated to the inputs: chance is ln(97)
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 16, 97)
    assert loss is not None and abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5


def test_future_tokens_do_not_change_past_logits(model: GPT) -> None:
    idx = torch.randint(0, 97, (1, 20))
    changed = idx.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 97
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_lm_head_is_tied_and_residual_projections_are_scaled() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**TINY, "n_layer": 8, "n_embd": 256, "n_head": 4}))
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    assert abs(model.h[0].attn.c_proj.weight.std().item() - 0.02 / 4) < 0.001
    assert abs(model.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002


@pytest.mark.parametrize(("field", "value", "message"), [
    ("n_embd", 30, "n_embd: 30 is not divisible by n_head 4"),
    ("block_size", 0, "block_size"),
    ("dropout", 1.0, "dropout"),
    ("n_kv_head", 3, "n_kv_head: 3 must divide n_head 4"),
    ("n_kv_head", 2, r"n_kv_head: 2 .*needs architecture modern"),
    ("norm_eps", 0.0, "norm_eps: must be > 0"),
])
def test_config_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, field: value})


def test_safetensors_round_trip_is_bit_identical(model: GPT, tmp_path: Path) -> None:
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    idx = torch.randint(0, 97, (2, 10))
    assert torch.equal(model(idx)[0], loaded(idx)[0])
    assert loaded.lm_head.weight.data_ptr() == loaded.wte.weight.data_ptr()


def test_mismatched_config_and_truncated_weights_are_refused(model: GPT, tmp_path: Path) -> None:
    save_model(model, tmp_path)
    (tmp_path / "config.json").write_text(GPTConfig(**{**TINY, "n_embd": 64}).to_json())
    with pytest.raises(ValueError, match="does not match the weights"):
        load_model(tmp_path)
    save_model(model, tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="unreadable weights"):
        load_model(tmp_path)


def test_kv_cache_equals_full_recompute(model: GPT) -> None:
    idx = torch.randint(0, 97, (2, 12))
    full, _ = model(idx)
    cache = KVCache(model.config.n_layer)
    first, _ = model(idx[:, :5], cache=cache)
    steps = [model(idx[:, i : i + 1], cache=cache)[0] for i in range(5, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, rtol=1e-5, atol=1e-5)


def test_greedy_generation_with_cache_matches_naive_loop(model: GPT) -> None:
    prompt = torch.randint(0, 97, (2, 4))
    fast = model.generate(prompt, 40, temperature=0)  # runs past block_size (32): sliding window
    slow = prompt
    for _ in range(12):  # within the window the two must agree exactly
        logits, _ = model(slow)
        slow = torch.cat([slow, logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(fast[:, :16], slow)
    assert fast.shape == (2, 44)


def test_generation_is_seeded_and_stops_at_eos(model: GPT) -> None:
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(prompt, 20, temperature=1.0, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 20, temperature=1.0, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    eos = int(a[0, 3])
    stopped = model.generate(prompt, 20, temperature=1.0, top_k=10, top_p=0.9, eos=eos,
                             generator=torch.Generator().manual_seed(1))
    assert stopped.shape[1] <= 4 and int(stopped[0, -1]) == eos


def test_tiny_model_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    batch = torch.randint(0, 97, (4, 17))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_flops_per_token(model: GPT) -> None:
    assert model.flops_per_token(16) == 6 * model.num_params() + 12 * 2 * 16 * 32


def test_modern_has_rotary_rmsnorm_qk_norm_swiglu_and_no_position_table_or_bias() -> None:
    model = GPT(GPTConfig(**TINY, architecture="modern"))
    names = dict(model.named_parameters())
    assert model.wpe is None and not any(name.endswith(".bias") for name in names)
    assert isinstance(model.ln_f, torch.nn.RMSNorm) and names["h.0.attn.q_norm.weight"].shape == (8,)
    assert names["h.0.mlp.c_fc.weight"].shape == (2 * 96, 32)  # gate | up, 8/3 of 32 rounded up to 32s
    assert model.lm_head.weight is model.wte.weight
    with pytest.raises(ValueError, match="architecture: 'llama' is not one of"):
        GPTConfig(**TINY, architecture="llama")
    with pytest.raises(ValueError, match="rotary embeddings need an even head size, got 3"):
        GPTConfig(**{**TINY, "n_embd": 12}, architecture="modern")


def test_grouped_query_attention_shares_key_value_heads_and_caches_only_them() -> None:
    """Two key/value heads for four query heads: query heads 0-1 read kv head 0, 2-3 kv head 1 (Llama's
    repeat_kv); the cache holds two heads; no QK-norm when it is off."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, **VARIANTS["llama-gqa"])).eval()
    assert model.h[0].attn.c_attn.weight.shape == (32 + 2 * 2 * 8, 32) and model.h[0].attn.q_norm is None
    assert model.h[0].mlp.c_fc.weight.shape == (80, 32) and model.ln_f.eps == 1e-5
    cache = KVCache(2)
    model(torch.randint(0, 97, (1, 5)), cache=cache)
    assert cache.keys[0] is not None and cache.keys[0].shape == (1, 2, 5, 8)
    grouped = GPTConfig(**TINY, **VARIANTS["llama-gqa"])
    full = GPT(GPTConfig(**TINY, architecture="modern", qk_norm=False, mlp_width=40, norm_eps=1e-5)).eval()
    state = model.state_dict()
    for i in range(grouped.n_layer):  # the same model with each key/value head copied for its query heads
        q, k, v = state[f"h.{i}.attn.c_attn.weight"].split([32, 16, 16])
        expand = lambda t: t.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32)  # noqa: E731
        state[f"h.{i}.attn.c_attn.weight"] = torch.cat([q, expand(k), expand(v)])
    full.load_state_dict(state)
    idx = torch.randint(0, 97, (2, 12))
    torch.testing.assert_close(model(idx)[0], full(idx)[0], rtol=1e-5, atol=1e-5)


def test_modern_scores_packed_continuations_as_it_scores_each_alone() -> None:
    """Rotary positions per row: a continuation packed after a shared context, at the positions it would have
    alone, gets the logits it gets alone (what the multiple-choice scorer relies on)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, architecture="modern")).eval()
    context, first, second = [5, 6, 7], [8, 9], [10, 11, 12]
    tokens = torch.tensor([context + first + second])
    positions = torch.tensor([[0, 1, 2, 3, 4, 3, 4, 5]])
    segment = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    causal = torch.ones(8, 8, dtype=torch.bool).tril()
    mask = (causal & ((segment[None, :] == 0) | (segment[:, None] == segment[None, :])))[None]
    packed = model.hidden_states(tokens, positions=positions, mask=mask)
    alone = model.hidden_states(torch.tensor([context + second]))
    torch.testing.assert_close(packed[0, 5:], alone[0, 3:], rtol=1e-5, atol=1e-5)
