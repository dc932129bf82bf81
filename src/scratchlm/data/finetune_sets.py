"""Fine-tune sets (instruction, preference) cleaned the way the pretraining corpus is: exact duplicates
go, and so does any record sharing a long word n-gram with a benchmark item.

A duplicate would sit in the train and the test split at once (the splits hash ids, not texts), so a test
score would partly measure recall of training records; a benchmark item in a fine-tune set would leak
the benchmark into the model that is scored on it. Both are counted in the stage's metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scratchlm.data.decontaminate import ContaminationIndex, evaluation_texts

Record = dict[str, Any]


def normalized(text: str) -> str:
    """Lower case, one space between words: the key two records are duplicates under."""
    return " ".join(text.lower().split())


def drop_duplicates(records: Sequence[Record], text_of: Callable[[Record], str]) -> tuple[list[Record], int]:
    """The records whose normalised text was not seen before (in id order: the first id stays), and the count
    dropped."""
    seen: set[str] = set()
    kept = []
    for record in sorted(records, key=lambda r: str(r["id"])):
        key = normalized(text_of(record))
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept, len(records) - len(kept)


def drop_contaminated(records: Sequence[Record], text_of: Callable[[Record], str], benchmark_dir: Path | None,
                      n: int) -> tuple[list[Record], dict[str, int]]:
    """The records sharing no word n-gram with an item of the benchmarks under `benchmark_dir` (none when
    None), and the count dropped per benchmark task."""
    if benchmark_dir is None:
        return list(records), {}
    index = ContaminationIndex.build(evaluation_texts([Path(benchmark_dir)]), n)
    kept, dropped = [], Counter[str]()
    for record in records:
        if groups := index.matches(text_of(record)):
            dropped.update(groups)
        else:
            kept.append(record)
    return kept, dict(sorted(dropped.items()))


def clean_set(records: Sequence[Record], text_of: Callable[[Record], str], benchmark_dir: Path | None, n: int
              ) -> tuple[list[Record], dict[str, Any]]:
    """Duplicates, then benchmark n-grams, removed; the kept records (by id) and what went, for the metrics."""
    unique, duplicates = drop_duplicates(records, text_of)
    kept, contaminated = drop_contaminated(unique, text_of, benchmark_dir, n)
    return kept, {"records_in": len(records), "duplicates_removed": duplicates,
                  "decontaminated": len(unique) - len(kept), "decontaminated_by": contaminated,
                  "records_kept": len(kept)}
