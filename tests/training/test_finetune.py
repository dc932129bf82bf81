"""What the fine-tunes share: answers generated in same-length batches are the answers of one prompt at a time."""

from __future__ import annotations

import torch

from scratchlm.evaluation.sampling import generate_answers
from scratchlm.model.gpt import GPT, GPTConfig
from scratchlm.tokenizer import train_bpe

PROMPTS = ["Q: one\nA: ", "Q: two\nA: ", "Q: a longer question here\nA: ", "Q: three\nA: ", "Q: four five six\nA: "]


def tiny() -> tuple[GPT, object]:
    tokenizer = train_bpe(PROMPTS * 5, 300, 1, ["<|endoftext|>", "<|pad|>"])
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=1, n_head=2, n_embd=32)), tokenizer


def test_batched_greedy_answers_are_the_one_at_a_time_answers() -> None:
    model, tokenizer = tiny()
    lengths = {len(tokenizer.encode(p).ids) for p in PROMPTS}
    assert 1 < len(lengths) < len(PROMPTS), "some prompts share a length, some do not"
    alone = [generate_answers(model, tokenizer, [p], 6)[0] for p in PROMPTS]
    assert generate_answers(model, tokenizer, PROMPTS, 6, batch_size=2) == alone
    assert generate_answers(model, tokenizer, PROMPTS, 6) == alone


def test_sampled_answers_follow_the_seed() -> None:
    model, tokenizer = tiny()

    def sample(seed: int) -> list[str]:
        return generate_answers(model, tokenizer, PROMPTS, 6, temperature=1.0, top_k=20,
                                generator=torch.Generator().manual_seed(seed))

    assert sample(1) == sample(1) and sample(1) != sample(2)
