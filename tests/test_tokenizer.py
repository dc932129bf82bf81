import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from scratchlm.config.base import ConfigError
from scratchlm.config.data import TokenizeParams, TokenizerParams
from scratchlm.config.loader import parse_section
from scratchlm.io import make_document, write_sharded
from scratchlm.tokenizer import check_same_ids, to_tiktoken, train_bpe, train_tokenizer
from scratchlm.tokens import TokenWriter, read_tokens, tokenize_splits

TRICKY = [
    "Plain English text with numbers 1,234.5 and punctuation; quotes \"like this\" and it's fine.",
    "Emoji 🤖🚀 and flags 🇫🇷, CJK 漢字かなカナ, Hangul 한국어, Arabic مرحبا",
    "Combining marks: e\u0301 a\u0308 n\u0303 (decomposed) vs é ä ñ (composed); zero width\u200bjoiner.",
    "Whitespace   runs\tand\ttabs\n\nand newlines\r\n  indented lines",
    "",
]


def corpus(n: int = 200) -> list[str]:
    rng = np.random.default_rng(0)
    words = ["the", "history", "of", "a", "city", "river", "town", "bridge", "harbour", "market", "church", "university", "century", "king"]
    return [" ".join(rng.choice(words, size=40)) + "." for _ in range(n)] + TRICKY


@pytest.fixture(scope="module")
def dedup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dedup")
    texts = corpus()
    for split, chunk in (("train", texts), ("val", texts[:20] + TRICKY), ("test", texts[20:30])):
        docs = [make_document(f"{split}/{i}", t, "s", {"split": split}) for i, t in enumerate(chunk)]
        write_sharded(root / split, "part", iter(docs), shard_docs=64)
    return root


def test_round_trip_on_tricky_text() -> None:
    tokenizer = train_bpe(corpus(), 400, 2, ["<|endoftext|>", "<|pad|>"])
    for text in corpus() + TRICKY:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_training_is_deterministic(tmp_path: Path, dedup_dir: Path) -> None:
    params = TokenizerParams(vocab_size=400, eval_docs=10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train_tokenizer(dedup_dir, tmp_path / "a", params)
    metrics = train_tokenizer(dedup_dir, tmp_path / "b", params)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert 258 < metrics["vocab_size"] <= 400 and metrics["bytes_per_token"] > 1.0
    assert Tokenizer.from_file(str(tmp_path / "a" / "tokenizer.json")).token_to_id("<|endoftext|>") == 0


def test_tiktoken_gives_the_same_ids_as_tokenizers() -> None:
    tokenizer = train_bpe(corpus(), 500, 2, ["<|endoftext|>", "<|pad|>"])
    check_same_ids(tokenizer, to_tiktoken(tokenizer), corpus() + TRICKY)


def test_loads_in_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = train_bpe(corpus(), 400, 2, ["<|endoftext|>", "<|pad|>"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast.encode(TRICKY[1]) == tokenizer.encode(TRICKY[1]).ids


def test_packing_header_dtype_and_separators(tmp_path: Path, dedup_dir: Path) -> None:
    tok_dir, out = tmp_path / "tok", tmp_path / "tokens"
    tok_dir.mkdir()
    out.mkdir()
    train_tokenizer(dedup_dir, tok_dir, TokenizerParams(vocab_size=400, eval_docs=10))
    metrics = tokenize_splits(dedup_dir, tok_dir, out, TokenizeParams(batch_docs=16, check_docs=10))
    header = json.loads((out / "val.json").read_text())
    tokens = read_tokens(out / "val.json")[:]
    assert header["dtype"] == "uint16" and header["tokens"] == len(tokens) == metrics["val_tokens"]
    assert header["documents"] == 25 and int((tokens == 0).sum()) == 25, "one <|endoftext|> after each document"
    assert int(tokens.max()) < 400
    tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    first_doc = tokens[: int(np.argmax(tokens == 0))].tolist()
    assert tokenizer.decode(first_doc) == corpus()[0]


def test_writer_refuses_ids_outside_the_vocabulary(tmp_path: Path) -> None:
    writer = TokenWriter(tmp_path / "x.bin", np.dtype(np.uint16), vocab_size=10)
    with pytest.raises(ValueError, match="token id 12 outside the vocabulary of 10"):
        writer.write(np.array([1, 12]))
    writer.close()


def test_vocab_must_hold_bytes_and_specials() -> None:
    with pytest.raises(ConfigError, match=r"tokenizer: vocab_size must be ≥ 258"):
        parse_section("tokenizer", {"vocab_size": 200})


def test_a_split_reads_as_the_flat_sequence_whatever_its_shards(tmp_path: Path, dedup_dir: Path) -> None:
    """Windows are drawn by offset into the split: the shards must join into exactly the one-file sequence."""
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    train_tokenizer(dedup_dir, tok_dir, TokenizerParams(vocab_size=400, eval_docs=10))
    from scratchlm.io import document_shards, read_documents

    docs = [doc for path in document_shards(dedup_dir / "train") for doc in read_documents(path)]
    flat = tmp_path / "flat"
    write_sharded(flat / "train", "part", iter(docs), shard_docs=10**6)
    for split in ("val", "test"):
        write_sharded(flat / split, "part", (d for p in document_shards(dedup_dir / split) for d in read_documents(p)),
                      shard_docs=10**6)
    sequences = {}
    for name, source in (("sharded", dedup_dir), ("one-file", flat)):
        out = tmp_path / name
        out.mkdir()
        tokenize_splits(source, tok_dir, out, TokenizeParams(check_docs=5))
        sequences[name] = read_tokens(out / "train.json")
    sharded, whole = sequences["sharded"], sequences["one-file"]
    assert len(json.loads((tmp_path / "sharded" / "train.json").read_text())["shards"]) > 1
    assert np.array_equal(sharded[:], whole[:])
    boundary = int(sharded.starts[1])
    assert np.array_equal(sharded[boundary - 3: boundary + 3], whole[boundary - 3: boundary + 3])
    assert len(sharded[5:5]) == 0 and np.array_equal(np.concatenate(list(sharded.chunks(7))), whole[:])


def test_training_sample_is_bounded_and_the_same_every_time(dedup_dir: Path) -> None:
    from scratchlm.tokenizer import training_sample

    counts, texts = training_sample(dedup_dir / "train", None)
    everything = list(texts)
    assert counts == [len(everything), sum(len(t.encode()) for t in everything)]
    budget = counts[1] // 3
    first_counts, first = training_sample(dedup_dir / "train", budget)
    first = list(first)
    again = list(training_sample(dedup_dir / "train", budget)[1])
    assert first == again and 0 < first_counts[1] <= budget and first_counts[0] == len(first)
    assert set(first) <= set(everything) and len(first) < len(everything)
