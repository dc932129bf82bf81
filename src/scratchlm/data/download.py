"""The `download` stage: fetch every configured source and normalise it into `data/raw/<role>/<source>/`.

Pretraining sources become document shards (`<member>-00000.parquet`, the member being a split);
the other roles become one `<member>.jsonl` per member (`data.jsonl` for the fine-tune sets, one
`<task>.jsonl` per benchmark task). Each source
folder carries `source.json` with its origin, version, digests and licence.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scratchlm.config.data import DownloadParams, SourceSpec
from scratchlm.data.readers import IdLedger, read_member
from scratchlm.data.roles import ROLE_INDEX, ROLES, source_dir
from scratchlm.data.sources import Fetched, fetch_source
from scratchlm.io import DataFormatError, atomic_write_json, write_jsonl, write_sharded

#: Sources fetched side by side: pip and HTTP mostly wait on the network (seven wheels: 5 s one by one, 2 s so).
FETCH_THREADS = 4


def download_all(params: DownloadParams, out_dir: Path) -> dict[str, Any]:
    """Fetch and normalise every source into `out_dir`; returns per-source record counts as metrics."""
    metrics: dict[str, Any] = {}
    ledgers: dict[str, IdLedger] = {}  # ids are unique per role: the sets a role's stages merge and split
    with tempfile.TemporaryDirectory(prefix="scratchlm-download-") as work, \
            ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch") as pool:
        fetching = {name: pool.submit(fetch_source, name, params.sources[name], Path(work), timeout_s=params.timeout_s,
                                      retries=params.retries, max_member_bytes=params.max_member_bytes)
                    for name in sorted(params.sources)}
        try:
            _write_all(fetching, params, out_dir, ledgers, metrics)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the sources not started yet are not fetched
            raise
    for role in ROLES:  # every role's folder exists (a DVC dep of the stages reading it), with or without sources
        names = sorted(name for name, spec in params.sources.items() if spec.role == role)
        (out_dir / role).mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / role / ROLE_INDEX, {"role": role, "sources": names})
    return metrics


def _write_all(fetching: dict[str, Future[Fetched]], params: DownloadParams, out_dir: Path,
               ledgers: dict[str, IdLedger], metrics: dict[str, Any]) -> None:
    """Write each source as its fetch completes, in name order: the same ids, files and first error as one
    source at a time."""
    for name in tqdm(fetching, desc="download", unit="source"):
        spec = params.sources[name]
        fetched = fetching[name].result()
        dest = source_dir(out_dir, spec.role, name)
        counts = write_source(name, spec, fetched.files, dest, params.shard_docs,
                              ledgers.setdefault(spec.role, IdLedger()))
        atomic_write_json(dest / "source.json", source_record(name, spec, fetched.provenance, counts))
        metrics[name] = {"records": sum(counts.values()), **{f"records_{k}": v for k, v in counts.items()}}


def write_source(name: str, spec: SourceSpec, files: dict[str, list[Path]], dest: Path,
                 shard_docs: int, ids: IdLedger | None = None) -> dict[str, int]:
    """Write each member's records in the schema of the source's role; returns records per member.

    Record ids are checked unique through `ids`, shared by the sources of one role (the splits hash them)."""
    dest.mkdir(parents=True, exist_ok=True)
    fmt = "jsonl" if spec.kind == "hf" else spec.format
    counts: dict[str, int] = {}
    ids = ids if ids is not None else IdLedger()
    for member in sorted(files):
        fields = ({"text_field": spec.text_field, "label_field": spec.label_field, "id_field": spec.id_field}
                  if fmt == "labelled" else None)
        records = read_member(fmt, name, member, files[member], spec.limit, ids, fields)
        if spec.role == "pretrain":
            counts[member] = _count(records, lambda rs, m=member: write_sharded(dest, m, rs, shard_docs))
        else:
            counts[member] = write_jsonl(dest / f"{member}.jsonl", records)
        if not counts[member]:  # an empty file or glob is a broken source, not a smaller corpus
            shown = ", ".join(str(path) for path in files[member][:3]) or "no file"
            raise DataFormatError(f"source {name}: member {member!r} has no records ({shown}): empty corpus")
    return counts


def _count(records: Iterator[dict[str, Any]], sink: Any) -> int:
    """Pass records through to `sink` while counting them (no second pass, no list in memory)."""
    seen = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal seen
        for record in records:
            seen += 1
            yield record

    sink(counted())
    return seen


def source_record(name: str, spec: SourceSpec, provenance: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """What a person (or an audit) needs to know about where a source's bytes came from."""
    return {
        "name": name,
        "role": spec.role,
        "format": spec.format,
        "licence": spec.licence,
        "limit": spec.limit,
        "records": counts,
        "origin": provenance,
    }

