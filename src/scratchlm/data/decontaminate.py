"""Decontamination: training documents that share a long word n-gram with an evaluation item go.

As in GPT-3 and lm-evaluation-harness, an n-gram of 13 lower-cased words is long enough that a
shared one means the item's text is in the document, not a common phrase. The evaluation items are
the benchmark questions with every answer choice, and the fine-tune sets (whose test splits are
drawn later, so all of their items count).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import xxhash

from scratchlm.data.filters import words_of
from scratchlm.io import read_jsonl


def ngram_hashes(text: str, n: int) -> set[int]:
    """64-bit hashes of every word n-gram of the text (none when it is shorter than n words)."""
    words = words_of(text)
    return {xxhash.xxh64_intdigest(" ".join(words[i : i + n]).encode("utf-8")) for i in range(len(words) - n + 1)}


def evaluation_texts(raw_dir: Path, sources: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(group, text) for every evaluation item; group is the benchmark task or the fine-tune source.

    `sources` maps each downloaded source name to its role.
    """
    for name, role in sorted(sources.items()):
        for path in sorted((raw_dir / name).glob("*.jsonl")):
            for record in read_jsonl(path):
                if role == "benchmark":
                    group = record["task"]
                    texts = [record["query"]] + [r["context"] + r["continuation"] for r in record["requests"]]
                elif role == "classification":
                    group, texts = name, [record["text"]]
                elif role == "instruction":
                    group, texts = name, [f"{record['instruction']} {record['input']} {record['output']}"]
                else:
                    continue
                yield from ((group, text) for text in texts)


class ContaminationIndex:
    """n-gram hash → the evaluation groups it occurs in (a bitmask over group ids, so an n-gram shared
    by several benchmarks credits all of them without a set per entry)."""

    def __init__(self, items: Iterable[tuple[str, str]], n: int) -> None:
        self.n = n
        self.groups: list[str] = []
        self.index: dict[int, int] = {}
        group_ids: dict[str, int] = {}
        for group, text in items:
            gid = group_ids.setdefault(group, len(group_ids))
            if gid == len(self.groups):
                self.groups.append(group)
            bit = 1 << gid
            for h in ngram_hashes(text, n):
                self.index[h] = self.index.get(h, 0) | bit

    def __len__(self) -> int:
        return len(self.index)

    def matches(self, text: str) -> list[str]:
        """The evaluation groups whose n-grams appear in the text, sorted (empty when clean)."""
        mask = 0
        for h in ngram_hashes(text, self.n):
            mask |= self.index.get(h, 0)
        return sorted(group for gid, group in enumerate(self.groups) if mask >> gid & 1)
