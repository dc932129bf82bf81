"""Held-out language modelling: loss, perplexity, bits per byte and word-level perplexity.

Token-level perplexity depends on the tokenizer, so it cannot be compared across models with other
vocabularies. Bits per byte (nats over UTF-8 bytes) and word-level perplexity (the exponent of the
total nats over whitespace-separated words, as lm-evaluation-harness reports for WikiText) can: they
divide the same total by a count that does not depend on the tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scratchlm.evaluation.loglik import Encode, rolling_windows, sum_nll
from scratchlm.model.gpt import GPT


def language_model_metrics(model: GPT, texts: Sequence[str], encode: Encode, bos: int, stride: int,
                           batch_size: int = 16, desc: str = "perplexity", progress: bool = True
                           ) -> dict[str, float]:
    """Each document starts after a `bos` token and is scored in rolling windows of block_size."""
    if not texts:
        raise ValueError("no documents to score")
    block = model.config.block_size
    windows = [w for text in texts for w in rolling_windows([bos, *encode(text)], block, min(stride, block))]
    nll, tokens = sum_nll(model, windows, batch_size, desc=desc, progress=progress)
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    words = sum(len(text.split()) for text in texts)
    loss = nll / max(1, tokens)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bpb": nll / math.log(2) / max(1, n_bytes),
            "word_ppl": math.exp(min(nll / max(1, words), 50.0)), "tokens": tokens, "bytes": n_bytes,
            "words": words, "documents": len(texts)}
