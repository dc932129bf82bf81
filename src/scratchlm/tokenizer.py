"""Byte-level BPE: trained with HF `tokenizers`, applied with `tiktoken` (same merges, same ids).

Training uses HF `tokenizers` and saves a plain `tokenizer.json` that `Tokenizer.from_file` and
`transformers.PreTrainedTokenizerFast(tokenizer_file=...)` load as-is. Encoding a corpus uses a
`tiktoken.Encoding` built from the same vocabulary: its regex pre-tokeniser is GPT-2's, which is what
HF's `ByteLevel(use_regex=True)` applies, and its byte-pair ranks are the HF token ids (the trainer
assigns ids in merge order), so the ids are identical and encoding is several times faster. The
tokenize stage re-checks that identity on a sample before trusting it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
PAD = "<|pad|>"
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A `tokenizer.json`; missing, truncated or not a tokenizer is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not an exported scratchlm model or tokenizer)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for any parse failure
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a readable tokenizer ({reason})") from None


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int, special_tokens: Sequence[str],
              length: int | None = None) -> Tokenizer:
    """Train a byte-level BPE (no prefix space, every byte in the base alphabet so nothing is unknown)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    return tokenizer


def min_vocab_size(special_tokens: Sequence[str]) -> int:
    """The byte alphabet plus the special tokens: a smaller vocabulary cannot encode every input."""
    return 256 + len(special_tokens)


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table, which byte-level BPE uses to spell raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    byte_values = list(printable)
    for byte in range(256):
        if byte not in printable:
            byte_values.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(byte_values, chars, strict=True)}


def token_bytes(token: str) -> bytes:
    table = _unicode_to_byte()
    return bytes(table[ch] for ch in token)


def to_tiktoken(tokenizer: Tokenizer, name: str = "scratchlm") -> Any:
    """A tiktoken Encoding with the tokenizer's merges, ids and special tokens."""
    import tiktoken

    vocab = tokenizer.get_vocab(with_added_tokens=True)
    specials = {t.content: vocab[t.content] for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    ranks = {token_bytes(token): index for token, index in vocab.items() if token not in specials}
    return tiktoken.Encoding(name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def byte_token_ids(tokenizer: Tokenizer) -> set[int]:
    """Ids of the lone non-ASCII bytes: pieces of characters no merge covers (byte fallback)."""
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    return {index for token, index in vocab.items() if len(token) == 1 and token_bytes(token)[0] >= 0x80}


def compression_metrics(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Bytes per token, tokens per word and the share of byte-fallback tokens on held-out text."""
    encodings = tokenizer.encode_batch(list(texts))
    tokens = sum(len(e.ids) for e in encodings)
    singles = byte_token_ids(tokenizer)
    fallback = sum(sum(1 for i in e.ids if i in singles) for e in encodings)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return {
        "bytes_per_token": n_bytes / max(1, tokens),
        "tokens_per_word": tokens / max(1, words),
        "byte_token_share": fallback / max(1, tokens),
        "eval_tokens": float(tokens),
    }


def check_same_ids(tokenizer: Tokenizer, encoding: Any, texts: Sequence[str]) -> None:
    """Refuse the fast path if tiktoken and HF disagree on any sample text."""
    expected = [e.ids for e in tokenizer.encode_batch(list(texts))]
    got = encoding.encode_ordinary_batch(list(texts))
    for index, (a, b) in enumerate(zip(expected, got, strict=True)):
        if a != b:
            raise ValueError(f"tiktoken and tokenizers disagree on sample {index}: refusing the fast encoder")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start


# ------------------------------------------------------------------------------------ stages


def split_texts(split_dir: Path) -> Iterator[str]:
    """Texts of one dedup split, shard by shard (never the whole split in memory)."""
    from scratchlm.io import document_shards, read_documents

    for path in document_shards(split_dir):
        for doc in read_documents(path):
            yield doc["text"]


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """`itertools.batched` (Python 3.12) for 3.11."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def require_documents(dedup_dir: Path, splits: Sequence[str]) -> None:
    """Fail early, naming the split, when a split the stage needs has no documents."""
    from scratchlm.io import DataFormatError

    for split in splits:
        if next(split_texts(dedup_dir / split), None) is None:
            raise DataFormatError(f"{dedup_dir / split}: no documents in the {split} split")


def training_sample(split_dir: Path, max_bytes: int | None) -> tuple[list[int], Iterator[str]]:
    """The texts to train on: every document, or, above `max_bytes` of text, the documents whose id hashes
    below the fraction that fits (a stable choice: the same ids on every machine and run), stopping at
    the budget. Returns ([documents, bytes] counted so far, the texts); the counts fill in as it is read."""
    from scratchlm.io import document_shards, read_documents

    total = sum(len(text.encode("utf-8")) for text in split_texts(split_dir)) if max_bytes else 0
    keep = 1.0 if not max_bytes or total <= max_bytes else max_bytes / total
    counts = [0, 0]

    def texts() -> Iterator[str]:
        for path in document_shards(split_dir):
            for doc in read_documents(path):
                size = len(doc["text"].encode("utf-8"))
                if keep < 1.0 and int.from_bytes(hashlib.sha256(doc["id"].encode("utf-8")).digest()[:8], "big") \
                        >= keep * 2**64:
                    continue
                if max_bytes and counts[1] + size > max_bytes:
                    return
                counts[0] += 1
                counts[1] += size
                yield doc["text"]

    return counts, texts()


def train_tokenizer(dedup_dir: Path, out_dir: Path, params: Any) -> dict[str, Any]:
    """Train on (a bounded sample of) `dedup_dir/train`, save `tokenizer.json`, measure compression on
    `dedup_dir/val`."""
    require_documents(dedup_dir, ("train", "val"))
    counts, texts = training_sample(dedup_dir / "train", params.max_train_bytes)
    tokenizer, seconds = timed(train_bpe, texts, params.vocab_size, params.min_frequency, params.special_tokens)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    sample = [text for _, text in zip(range(params.eval_docs), split_texts(dedup_dir / "val"), strict=False)]
    return {"vocab_size": tokenizer.get_vocab_size(), "train_seconds": round(seconds, 3),
            "train_documents": counts[0], "train_bytes": counts[1], **compression_metrics(tokenizer, sample)}
