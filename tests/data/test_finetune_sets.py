"""Fine-tune sets cleaned as the corpus is: exact duplicates (case and spacing aside) and benchmark n-grams go."""

from __future__ import annotations

from pathlib import Path

from benchmark_dirs import benchmark_folder

from scratchlm.data.finetune_sets import clean_set, drop_duplicates

QUERY = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat today"


def text(record: dict) -> str:
    return f"{record['instruction']} {record['output']}"


def test_duplicates_keep_the_first_id_whatever_the_case_and_spacing() -> None:
    records = [{"id": "b", "instruction": "Say  hi", "output": "Hi!"}, {"id": "a", "instruction": "say hi", "output": "hi!"},
               {"id": "c", "instruction": "Say hi", "output": "Hello."}]
    kept, dropped = drop_duplicates(records, text)
    assert [r["id"] for r in kept] == ["a", "c"] and dropped == 1


def test_a_record_holding_a_benchmark_item_goes_and_is_counted_by_task(tmp_path: Path) -> None:
    records = [{"id": "1", "instruction": "Finish this.", "output": QUERY.upper()},
               {"id": "2", "instruction": "Say hi", "output": "Hi!"},
               {"id": "3", "instruction": "say HI", "output": "hi!"}]
    kept, stats = clean_set(records, text, benchmark_folder(tmp_path, "sciq", QUERY), 13)
    assert [r["id"] for r in kept] == ["2"]
    assert stats == {"records_in": 3, "duplicates_removed": 1, "decontaminated": 1,
                     "decontaminated_by": {"sciq": 1}, "records_kept": 1}


def test_without_benchmarks_only_duplicates_go() -> None:
    kept, stats = clean_set([{"id": "1", "instruction": QUERY, "output": "x"}], text, None, 13)
    assert len(kept) == 1 and stats["decontaminated"] == 0
