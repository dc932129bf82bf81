"""Decontamination: training documents that share a long word n-gram with an evaluation item go.

As in GPT-3 and lm-evaluation-harness, an n-gram of 13 lower-cased words is long enough that a
shared one means the item's text is in the document, not a common phrase. The evaluation items are
those of the sets the dedup stage is given: by default the benchmark questions with every answer
choice, and the instruction set (whose test split is drawn later, so all of its items count). The
classification set is not among them: a labelled set can then change without re-making the corpus,
the tokenizer and the language model (the classifier is judged against baselines trained on the same
split, not against its pretraining).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import xxhash

from scratchlm.data.filters import words_of
from scratchlm.data.roles import role_of, source_dirs
from scratchlm.io import read_jsonl


def ngram_hashes(text: str, n: int) -> set[int]:
    """64-bit hashes of every word n-gram of the text (none when it is shorter than n words)."""
    words = words_of(text)
    return {xxhash.xxh64_intdigest(" ".join(words[i : i + n]).encode("utf-8")) for i in range(len(words) - n + 1)}


def evaluation_texts(folders: list[Path]) -> Iterator[tuple[str, str]]:
    """(group, text) for every item of the sources under `folders` (role folders of the download output,
    or source folders); group is the benchmark task or the fine-tune source."""
    sources = {name: folder for root in folders for name, folder in source_dirs(root).items()}
    for name, folder in sorted(sources.items()):
        role = role_of(folder)
        for path in sorted(folder.glob("*.jsonl")):
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
    """n-gram hash → the evaluation groups it occurs in, as two sorted numpy arrays (hashes, and a bitmask
    over group ids per hash): 16 bytes an n-gram instead of a Python dict entry's ~100, saved to one `.npz`
    that every worker memory-maps, so lookups run shard by shard on any executor."""

    MAX_GROUPS = 64  # one uint64 bitmask per n-gram

    def __init__(self, hashes: np.ndarray, masks: np.ndarray, groups: list[str], n: int) -> None:
        self.hashes, self.masks, self.groups, self.n = hashes, masks, groups, n

    @classmethod
    def build(cls, items: Iterable[tuple[str, str]], n: int) -> ContaminationIndex:
        groups: list[str] = []
        group_ids: dict[str, int] = {}
        index: dict[int, int] = {}  # the evaluation sets are small next to the corpus: a dict while building
        for group, text in items:
            gid = group_ids.setdefault(group, len(group_ids))
            if gid == len(groups):
                if gid == cls.MAX_GROUPS:
                    raise ValueError(f"more than {cls.MAX_GROUPS} evaluation groups to decontaminate against")
                groups.append(group)
            bit = 1 << gid
            for h in ngram_hashes(text, n):
                index[h] = index.get(h, 0) | bit
        hashes = np.fromiter(sorted(index), dtype=np.uint64, count=len(index))
        masks = np.fromiter((index[int(h)] for h in hashes), dtype=np.uint64, count=len(index))
        return cls(hashes, masks, groups, n)

    def save(self, path: Path) -> None:
        np.savez(path, hashes=self.hashes, masks=self.masks, groups=np.array(self.groups), n=np.array(self.n))

    @classmethod
    def load(cls, path: Path) -> ContaminationIndex:
        with np.load(path) as data:
            return cls(data["hashes"], data["masks"], [str(g) for g in data["groups"]], int(data["n"]))

    def __len__(self) -> int:
        return len(self.hashes)

    def matches(self, text: str) -> list[str]:
        """The evaluation groups whose n-grams appear in the text, sorted (empty when clean)."""
        found = np.fromiter(ngram_hashes(text, self.n), dtype=np.uint64)
        if not len(found) or not len(self.hashes):
            return []
        at = np.minimum(np.searchsorted(self.hashes, found), len(self.hashes) - 1)
        mask = int(np.bitwise_or.reduce(self.masks[at[self.hashes[at] == found]], initial=0))
        return sorted(group for gid, group in enumerate(self.groups) if mask >> gid & 1)
