"""Log-likelihood scoring, multiple choice, LAMBADA and perplexity against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scratchlm.evaluation.language_modeling import language_model_metrics
from scratchlm.evaluation.loglik import (
    Scored,
    encode_pair,
    packed_mask,
    rolling_windows,
    score_groups,
    score_requests,
    sum_nll,
)
from scratchlm.evaluation.multiple_choice import (
    check_items,
    evaluate_task,
    item_record,
    lambada_metrics,
    mean_stderr,
    score_items,
    task_metrics,
)
from scratchlm.io import DataFormatError
from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.tokenizer import train_bpe

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Birds fly over the sea and the hills."] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXTS, 300, 1, ["<|endoftext|>", "<|pad|>"])


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def by_hand(model: GPT, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """One unbatched forward over the whole sequence, summing the continuation's log-probabilities."""
    ids = (context + continuation)[-(model.config.block_size + 1):]
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([ids[:-1]]))[0][0], dim=-1)
    total, greedy = 0.0, True
    for k in range(len(continuation)):
        pos = len(ids) - 1 - len(continuation) + k
        total += float(logprobs[pos, ids[pos + 1]])
        greedy &= int(logprobs[pos].argmax()) == ids[pos + 1]
    return total, greedy


def test_batched_scores_equal_unbatched_hand_computation(model: GPT, tokenizer) -> None:
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    pairs = [encode_pair(encode, c, x, bos=0) for c, x in [("The cat sat on", " the mat."), ("A dog", " ran"),
                                                           ("", "Birds fly"),  # empty context: bos only
                                                           ("Birds fly over the sea and the hills. " * 3, " The cat")]]
    scored = score_requests(model, pairs, batch_size=3, progress=False)
    for (ctx, cont), got in zip(pairs, scored, strict=True):
        want, greedy = by_hand(model, ctx, cont)
        assert got.loglik == pytest.approx(want, abs=1e-4)
        assert got.is_greedy == greedy and got.tokens == len(cont)
    assert pairs[2][0] == [0]
    assert len(pairs[3][0]) + len(pairs[3][1]) > model.config.block_size  # the long one was cut on the left


def test_trailing_context_space_moves_to_the_continuation(tokenizer) -> None:
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    context, continuation = encode_pair(encode, "The cat sat on ", "the mat.", bos=0)
    assert context == encode("The cat sat on") and continuation == encode("The cat sat on the mat.")[len(context):]


def test_acc_and_acc_norm_on_a_hand_computed_item() -> None:
    item = {"id": "t/1", "gold": 1, "choices": ["a", "bbbbbb"],
            "requests": [{"context": "q", "continuation": " a"}, {"context": "q", "continuation": " bbbbbb"}]}
    record = item_record(item, [Scored(-4.0, False, 1), Scored(-6.0, False, 3)])
    # acc picks the larger sum (-4 > -6); acc_norm divides by characters: -4/2 = -2 < -6/7 ≈ -0.86
    assert (record["pred"], record["acc"]) == (0, 0.0)
    assert (record["pred_norm"], record["acc_norm"]) == (1, 1.0)


def test_standard_error_and_chance_match_the_harness() -> None:
    assert mean_stderr([1.0, 0.0, 1.0, 1.0]) == pytest.approx(0.25)  # sample std 0.5 over √4
    items = [{"requests": [{}] * 4}, {"requests": [{}] * 2}]
    records = [{"acc": 1.0, "acc_norm": 0.0}, {"acc": 0.0, "acc_norm": 0.0}]
    metrics = task_metrics(items, records)
    assert metrics["chance"] == pytest.approx((0.25 + 0.5) / 2) and metrics["acc"] == 0.5
    assert metrics["acc_stderr"] == pytest.approx(0.5) and metrics["acc_norm_stderr"] == 0.0


def test_lambada_accuracy_is_greedy_match_and_perplexity_is_the_harness_one(model: GPT, tokenizer) -> None:
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    items = [{"id": f"lambada/{i}", "gold": 0, "requests": [{"context": c, "continuation": x}]}
             for i, (c, x) in enumerate([("The cat sat on the", " mat"), ("A dog ran in the", " park")])]
    metrics, records = evaluate_task(model, "lambada", items, encode, 0, progress=False)
    hand = [by_hand(model, *encode_pair(encode, it["requests"][0]["context"], it["requests"][0]["continuation"], 0))
            for it in items]
    assert [r["acc"] for r in records] == [float(g) for _, g in hand]
    assert metrics["ppl"] == pytest.approx(math.exp(-sum(ll for ll, _ in hand) / 2), rel=1e-3)
    assert lambada_metrics([{"acc": 1.0, "loglik": -2.0}, {"acc": 0.0, "loglik": -4.0}])["ppl"] == pytest.approx(
        math.exp(3.0))


def test_bad_gold_index_names_the_item() -> None:
    with pytest.raises(DataFormatError, match=r"bench.jsonl: item piqa/7: gold 2 is not an index into its 2"):
        check_items([{"id": "piqa/7", "gold": 2, "requests": [{}, {}]}], "bench.jsonl")


def test_rolling_windows_score_every_token_once_with_context() -> None:
    ids = list(range(40))
    windows = list(rolling_windows(ids, block=8, stride=4))
    scored = [t for window, n in windows for t in window[-n:]]
    assert scored == ids[1:]
    assert all(len(w) <= 9 for w, _ in windows)
    assert all(len(w) - n >= 4 for w, n in windows[1:]), "later windows carry block - stride tokens of context"
    assert list(rolling_windows([5], 8, 4)) == []


def test_word_level_perplexity_arithmetic(model: GPT, tokenizer) -> None:
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    texts = ["The cat sat on the mat.", "Birds fly over the sea and the hills. " * 4]
    metrics = language_model_metrics(model, texts, encode, bos=0, stride=8, progress=False)
    # by hand: every token of each document scored once, each with a context cut to block_size
    nll, tokens = 0.0, 0
    for text in texts:
        ids = [0, *encode(text)]
        for i in range(1, len(ids)):
            context = ids[max(0, i - 16):i]
            with torch.no_grad():
                logits = model(torch.tensor([context]))[0][0, -1]
            nll -= float(F.log_softmax(logits, -1)[ids[i]])
            tokens += 1
    words = sum(len(t.split()) for t in texts)
    assert metrics["tokens"] == tokens and metrics["words"] == words
    # stride 1 gives every token its full context: exactly the hand computation
    exact = language_model_metrics(model, texts, encode, bos=0, stride=1, progress=False)
    assert exact["loss"] == pytest.approx(nll / tokens, abs=1e-5)
    # stride 8 gives each token at least 8 tokens of context, not always 16: close, not equal
    assert metrics["loss"] == pytest.approx(nll / tokens, rel=0.05)
    total, count = sum_nll(model, [w for t in texts for w in rolling_windows([0, *encode(t)], 16, 8)],
                           progress=False)
    assert count == tokens
    assert metrics["word_ppl"] == pytest.approx(math.exp(total / words), rel=1e-6)
    assert metrics["bpb"] == pytest.approx(total / math.log(2) / sum(len(t.encode()) for t in texts), rel=1e-6)
    assert metrics["ppl"] == pytest.approx(math.exp(total / tokens), rel=1e-6)


def test_empty_context_or_continuation_scores_what_can_be_scored(model: GPT) -> None:
    no_context, no_continuation = score_requests(model, [([], [5, 6, 7]), ([3, 4], [])], progress=False)
    assert no_continuation == Scored(0.0, True, 0)
    want, greedy = by_hand(model, [5], [6, 7])  # nothing predicts the first token: it is context
    assert no_context.loglik == pytest.approx(want, abs=1e-4) and no_context.tokens == 2


def test_packed_groups_score_each_choice_as_if_alone(model: GPT, tokenizer) -> None:
    """A continuation packed after its shared context must see the context and itself only: any
    leak from a sibling choice or from padding changes its log-likelihood."""
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    context = encode("The cat sat on")
    groups = [
        (context, [encode(" the mat."), encode(" a dog ran in the park"), encode(" sea"), []]),
        ([0], [encode("Birds fly"), encode("A dog")]),  # empty context: bos only
        (encode("Birds fly over the sea and the hills. " * 2), [encode(" The cat sat on the mat")]),  # too long: unpacked
        (encode("A dog ran"), [encode(" in the park."), encode(" over the hills")]),
        ([7] * (model.config.block_size + 1), [[]]),  # nothing to score, and a context one past the block
    ]
    assert len(groups[2][0]) + len(groups[2][1][0]) > model.config.block_size + 1
    scored = score_groups(model, groups, batch_size=5, progress=False)  # 5 requests: groups split over batches
    for (ctx, conts), got in zip(groups, scored, strict=True):
        assert len(got) == len(conts)
        for cont, one in zip(conts, got, strict=True):
            want, greedy = by_hand(model, ctx, cont) if cont else (0.0, True)
            assert one.loglik == pytest.approx(want, abs=1e-4)
            assert one.is_greedy == greedy and one.tokens == len(cont)


def test_packed_mask_keeps_choices_apart() -> None:
    mask = packed_mask(torch.tensor([[0, 0, 1, 1, 2, -1]]))[0]
    assert mask[3].tolist() == [True, True, True, True, False, False]  # context + own earlier token
    assert mask[4].tolist() == [True, True, False, False, True, False]  # not the sibling choice
    assert mask[5].tolist() == [False] * 5 + [True]  # padding sees itself only


def test_items_group_choices_by_their_context(model: GPT, tokenizer) -> None:
    """Items whose choices carry different contexts (Winogrande-style) are scored per context."""
    encode = lambda t: tokenizer.encode(t).ids  # noqa: E731
    item = {"id": "w", "gold": 0, "requests": [{"context": "The cat", "continuation": " sat on the mat."},
                                                {"context": "A dog", "continuation": " sat on the mat."},
                                                {"context": "The cat", "continuation": " ran"}]}
    got = score_items(model, [item], encode, bos=0, progress=False)[0]
    for request, one in zip(item["requests"], got, strict=True):
        ctx, cont = encode_pair(encode, request["context"], request["continuation"], bos=0)
        assert one.loglik == pytest.approx(by_hand(model, ctx, cont)[0], abs=1e-4)
