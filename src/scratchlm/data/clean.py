"""The `clean` stage: normalise every pretraining document and drop low-quality ones, shard by shard.

Each raw shard maps to one clean shard with the same relative path, in worker processes that share
nothing, so the output bytes do not depend on the number of workers and one shard at a time is in
memory per worker.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scratchlm.config.data import CleanParams
from scratchlm.data.filters import apply_filters, normalize_text, undo_wikitext
from scratchlm.data.parallel import Executor, LocalExecutor
from scratchlm.io import DataFormatError, atomic_write_json, document_shards, read_documents, write_documents

SAMPLE_CHARS = 600


@dataclass
class ShardStats:
    """What happened to one shard: counts in and out, drops per reason, a few dropped examples."""

    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def merge(self, other: ShardStats, max_samples: int) -> None:
        for name in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.drops.update(other.drops)
        for reason, docs in other.samples.items():
            kept = self.samples.setdefault(reason, [])
            kept.extend(docs[: max_samples - len(kept)])


def clean_document(doc: dict[str, str]) -> str:
    """The normalised text of a raw document (WikiText artefacts undone for WikiText sources)."""
    text = doc["text"]
    if json.loads(doc["meta"]).get("format") == "wikitext":
        text = undo_wikitext(text)
    return normalize_text(text)


def clean_shard(src: Path, dest: Path, params: CleanParams) -> ShardStats:
    """Clean one shard into `dest`; pure function of its inputs (safe to run in any worker)."""
    stats = ShardStats()
    kept: list[dict[str, str]] = []
    for doc in read_documents(src):
        stats.docs_in += 1
        stats.bytes_in += len(doc["text"].encode("utf-8"))
        text = clean_document(doc)
        keep, reason = apply_filters(text, params)
        if keep:
            kept.append({**doc, "text": text})
            stats.docs_out += 1
            stats.bytes_out += len(text.encode("utf-8"))
            continue
        stats.drops[reason] += 1
        sample = stats.samples.setdefault(reason, [])
        if len(sample) < params.dropped_samples_per_reason:
            sample.append({"id": doc["id"], "text": text[:SAMPLE_CHARS]})
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_documents(dest, kept)
    return stats


def _clean_job(job: tuple[Path, Path, CleanParams]) -> ShardStats:
    return clean_shard(*job)


def clean_corpus(raw_dir: Path, out_dir: Path, params: CleanParams, sources: list[str],
                 executor: Executor | None = None) -> dict[str, Any]:
    """Clean the document shards of the named pretraining sources; returns the stage metrics.

    One job per shard on `executor` (default: a local pool of `num_proc`), with absolute paths so a Ray
    worker anywhere on a shared filesystem finds them. Writes `dropped_samples.json` (examples per drop
    reason) beside the shards so a person can see what each filter removes.
    """
    jobs = [(src.absolute(), (out_dir / src.relative_to(raw_dir)).absolute(), params) for name in sorted(sources)
            for src in document_shards(raw_dir / name)]
    if not jobs:
        raise DataFormatError(f"{raw_dir}: no document shards of a pretraining source (sources: {sorted(sources)})")
    total = ShardStats()
    executor = executor or LocalExecutor(params.num_proc)
    for stats in tqdm(executor.map(_clean_job, jobs), total=len(jobs), desc="clean", unit="shard"):
        total.merge(stats, params.dropped_samples_per_reason)
    if not total.docs_out:  # the next stages could only fail later with a vaguer message
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(total.drops.items())) or "none"
        raise DataFormatError(f"{raw_dir}: every one of the {total.docs_in} documents was filtered out "
                              f"(drops: {reasons}); loosen the clean params")
    atomic_write_json(out_dir / "dropped_samples.json", total.samples)
    return {
        "docs_in": total.docs_in,
        "docs_out": total.docs_out,
        "bytes_in": total.bytes_in,
        "bytes_out": total.bytes_out,
        "drops": dict(sorted(total.drops.items())),
    }
