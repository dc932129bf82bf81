"""Token files: every dedup shard encoded into one file of token ids, and an index per split.

`data/tokens/<split>/part-00000.bin`, … hold the ids of the documents of `data/dedup/<split>/part-00000.parquet`,
…, each document followed by `<|endoftext|>`, in the dtype the vocabulary needs; `data/tokens/<split>.json`
is the split's index: dtype, totals (tokens, documents, UTF-8 bytes of text), the tokenizer's sha256 and
each shard's file and token count. Readers see a split as one sequence (`read_tokens`), the shards
concatenated in order, which is exactly the flat file an unsharded run would have written: the same
windows at the same offsets, whatever the number of shards.

Each shard is one job on an executor (`scratchlm.data.parallel`): a process pool here, Ray tasks on a
cluster, the same bytes either way.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchlm.io import DataFormatError, document_shards, read_documents, sha256_file
from scratchlm.tokenizer import (
    EOT,
    batched,
    check_same_ids,
    load_tokenizer,
    require_documents,
    split_texts,
    to_tiktoken,
)

if TYPE_CHECKING:  # training reads token files only: it does not depend on the executors' code
    from scratchlm.data.parallel import Executor

SPLITS = ("train", "val", "test")


class TokenWriter:
    """Append token ids to a flat binary file of a fixed dtype, counting as it goes.

    Chunks go straight to disk, so memory holds one batch at a time whatever the corpus size; the
    result is read back with `np.memmap(path, dtype, mode="r")`.
    """

    def __init__(self, path: Path, dtype: np.dtype, vocab_size: int) -> None:
        self.path, self.dtype, self.vocab_size = path, np.dtype(dtype), vocab_size
        self.count = 0
        self.max_id = -1
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, ids: np.ndarray) -> None:
        if ids.size:
            top = int(ids.max())
            if top >= self.vocab_size or int(ids.min()) < 0:
                raise ValueError(f"{self.path}: token id {top} outside the vocabulary of {self.vocab_size}")
            self.max_id = max(self.max_id, top)
        ids.astype(self.dtype, copy=False).tofile(self._handle)
        self.count += int(ids.size)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_documents(encoding: Any, batches: Iterator[list[str]], writer: TokenWriter, eot: int,
                     num_threads: int) -> tuple[int, int]:
    """Encode batches of documents, each followed by `eot`; returns (documents, UTF-8 bytes of text)."""
    docs = n_bytes = 0
    for batch in batches:
        n_bytes += sum(len(text) if text.isascii() else len(text.encode("utf-8")) for text in batch)
        encoded = encoding.encode_ordinary_batch(batch, num_threads=num_threads)
        flat: list[int] = []
        for ids in encoded:  # list.extend copies in C; tiktoken hands back Python lists either way
            flat.extend(ids)
            flat.append(eot)
        try:
            ids = np.array(flat, dtype=writer.dtype)  # straight to the file's dtype: no int64 copy
        except OverflowError:  # an id the dtype cannot hold is outside the vocabulary too
            ids = np.array(flat, dtype=np.int64)
        writer.write(ids)
        docs += len(batch)
    return docs, n_bytes


# ---------------------------------------------------------------------------------- encoding, shard by shard


@dataclass(frozen=True)
class ShardJob:
    """One dedup shard to encode into `dest` (absolute paths: a Ray worker anywhere must find them)."""

    source: Path
    dest: Path
    tokenizer_file: Path
    batch_docs: int
    num_threads: int


@functools.lru_cache(maxsize=2)
def _encoding(tokenizer_file: str, version: tuple[int, int]) -> tuple[Any, int, int]:
    """(tiktoken encoding, eot id, vocab size), built once per worker process; `version` (mtime, size)."""
    tokenizer = load_tokenizer(tokenizer_file)
    eot = tokenizer.token_to_id(EOT)
    if eot is None:
        raise ValueError(f"{tokenizer_file}: has no {EOT} token")
    return to_tiktoken(tokenizer), eot, tokenizer.get_vocab_size()


def encode_shard(job: ShardJob) -> dict[str, int]:
    """Encode one shard; returns its counts (tokens, documents, UTF-8 bytes of text)."""
    stat = job.tokenizer_file.stat()
    encoding, eot, vocab_size = _encoding(str(job.tokenizer_file), (stat.st_mtime_ns, stat.st_size))
    texts = (doc["text"] for doc in read_documents(job.source))
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    with TokenWriter(job.dest, token_dtype(vocab_size), vocab_size) as writer:
        docs, text_bytes = encode_documents(encoding, batched(texts, job.batch_docs), writer, eot, job.num_threads)
    return {"tokens": writer.count, "documents": docs, "text_bytes": text_bytes}


def tokenize_splits(dedup_dir: Path, tokenizer_dir: Path, out_dir: Path, params: Any,
                    executor: Executor | None = None) -> dict[str, Any]:
    """Encode every shard of train/val/test (jobs on `executor`, default in-process) and write each split's
    index; returns tokens and documents per split."""
    tokenizer_file = (tokenizer_dir / "tokenizer.json").absolute()
    require_documents(dedup_dir, ("train", "val"))
    tokenizer = load_tokenizer(tokenizer_file)
    sample = [t for split in ("train", "val")
              for _, t in zip(range(params.check_docs), split_texts(dedup_dir / split), strict=False)]
    check_same_ids(tokenizer, to_tiktoken(tokenizer), sample)
    if tokenizer.token_to_id(EOT) is None:
        raise ValueError(f"{tokenizer_file}: has no {EOT} token")
    vocab_size, digest = tokenizer.get_vocab_size(), sha256_file(tokenizer_file)
    if executor is None:
        from scratchlm.data.parallel import LocalExecutor

        executor = LocalExecutor(1)  # one process: tiktoken's own threads (num_threads) do the work
    metrics: dict[str, Any] = {}
    for split in SPLITS:
        shards = document_shards(dedup_dir / split)
        names = [f"{split}/{path.relative_to(dedup_dir / split).with_suffix('.bin').as_posix()}" for path in shards]
        jobs = [ShardJob(path.absolute(), (out_dir / name).absolute(), tokenizer_file, params.batch_docs,
                         params.num_threads) for path, name in zip(shards, names, strict=True)]
        counts = list(executor.map(encode_shard, jobs))
        write_index(out_dir / f"{split}.json", token_dtype(vocab_size), names, counts, digest, vocab_size)
        metrics[f"{split}_tokens"] = sum(c["tokens"] for c in counts)
        metrics[f"{split}_documents"] = sum(c["documents"] for c in counts)
    return metrics


def write_index(path: Path, dtype: np.dtype, names: list[str], counts: list[dict[str, int]], tokenizer_sha256: str,
                vocab_size: int) -> None:
    """A split's index. `text_bytes` lets training report bits per byte, which compares across vocabularies."""
    index = {"dtype": np.dtype(dtype).name, "tokens": sum(c["tokens"] for c in counts),
             "documents": sum(c["documents"] for c in counts), "text_bytes": sum(c["text_bytes"] for c in counts),
             "tokenizer_sha256": tokenizer_sha256, "vocab_size": vocab_size, "eot": EOT,
             "shards": [{"file": name, "tokens": c["tokens"]} for name, c in zip(names, counts, strict=True)]}
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------- reading


class TokenSequence:
    """A split's shards as one read-only sequence of ids: `len()`, and slices `[a:b]` that are numpy arrays
    (a window across two shards is joined). The shards are memory-mapped: nothing is loaded until sliced."""

    def __init__(self, shards: list[np.ndarray], dtype: np.dtype) -> None:
        self.shards = [shard for shard in shards if len(shard)]
        self.dtype = np.dtype(dtype)
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards]).tolist()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("token sequences are read by contiguous slices")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = bisect.bisect_right(self.starts, start) - 1
        pieces = []
        for shard in range(first, len(self.shards)):
            lo, hi = self.starts[shard], self.starts[shard + 1]
            if lo >= stop:
                break
            pieces.append(self.shards[shard][max(start, lo) - lo: min(stop, hi) - lo])
        return np.asarray(pieces[0]) if len(pieces) == 1 else np.concatenate(pieces)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The whole sequence in pieces of at most `size` ids (bounded memory)."""
        for start in range(0, len(self), size):
            yield self[start: start + size]


def read_tokens(index_path: Path) -> TokenSequence:
    """A split as one sequence, from its index (`<split>.json`); each shard's size is checked against it."""
    try:
        index = json.loads(Path(index_path).read_text(encoding="utf-8"))
        dtype, shards = np.dtype(index["dtype"]), index["shards"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataFormatError(f"{index_path}: not a token index ({type(error).__name__}: {error})") from None
    maps = []
    for shard in shards:
        path = Path(index_path).parent / shard["file"]
        expected = shard["tokens"] * dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            found = path.stat().st_size if path.is_file() else "no"
            raise DataFormatError(f"{path}: {found} bytes, {index_path} says {expected}")
        maps.append(np.memmap(path, dtype=dtype, mode="r", shape=(shard["tokens"],)) if shard["tokens"]
                    else np.zeros(0, dtype=dtype))
    return TokenSequence(maps, dtype)
