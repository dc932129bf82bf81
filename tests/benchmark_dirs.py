"""A benchmark source folder for tests: one task, one item, as download writes them (decontamination reads it)."""

from __future__ import annotations

import json
from pathlib import Path

from scratchlm.io import write_jsonl


def benchmark_folder(root: Path, task: str, query: str) -> Path:
    """`root/benchmark/tasks/` with `source.json` (role benchmark) and `<task>.jsonl` holding one item."""
    folder = root / "benchmark" / "tasks"
    folder.mkdir(parents=True)
    (folder / "source.json").write_text(json.dumps({"role": "benchmark"}))
    write_jsonl(folder / f"{task}.jsonl", [{"id": f"{task}/0", "task": task, "query": query, "requests": []}])
    return folder
