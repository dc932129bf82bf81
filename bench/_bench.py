"""What the bench scripts share: figures with targets and pass/short marks, the machine, JSON out.

Absolute seconds on a shared machine are noisy; the targets are mostly ratios taken in one run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None  # None: a figure with no goal, printed for reference
    higher_is_better: bool = True
    note: str = ""

    @property
    def mark(self) -> str:
        if self.target is None:
            return ""
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "pass" if ok else "SHORT"


def machine() -> dict[str, object]:
    """Enough about the machine to read the figures: CPU, cores, torch, native bf16."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def report(title: str, figures: list[Figure], out: str | Path, extra: dict | None = None) -> None:
    """Print the table and a summary line; write figures, machine and date to `out` (JSON)."""
    print(f"\n{title}")
    print(f"{'figure':<44}{'value':>12} {'unit':<10}{'target':>10}  mark")
    for f in figures:
        target = "" if f.target is None else f"{'≥' if f.higher_is_better else '≤'} {f.target:g}"
        print(f"{f.name:<44}{f.value:>12.4g} {f.unit:<10}{target:>10}  {f.mark}{'  ' + f.note if f.note else ''}")
    judged = [f for f in figures if f.target is not None]
    passed = sum(f.mark == "pass" for f in judged)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"title": title, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                                     "figures": [{**asdict(f), "mark": f.mark} for f in figures],
                                     **(extra or {})}, indent=2) + "\n", encoding="utf-8")
    short = [f.name for f in judged if f.mark != "pass"]
    print(f"summary: {title}: {passed}/{len(judged)} targets pass" + (f"; short: {', '.join(short)}" if short else ""))


def exclusive_peak_tflops(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """The matmul peak MFU is measured against, from a probe that had its cores to itself; the bench stops
    otherwise (a probe on busy cores measures a share of the peak, and MFU against it comes out too high)."""
    from scratchlm.training.module import PROBE_SHARE_NEEDED, cpu_probe

    tflops, share = cpu_probe(dtype, n, seconds)
    if share < PROBE_SHARE_NEEDED:
        raise SystemExit(f"{dtype} {n}x{n}: the probe had {share:.0%} of its cores: run with nothing else on them")
    return tflops


def best_of(repeats: int, fn, *args, **kwargs) -> tuple[object, float]:
    """(result, fastest wall seconds of `repeats` calls): as `timeit` advises, the minimum is the run
    least disturbed by whatever else shares the machine; means and single runs swing ±25% here."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return result, min(times)


def default_pretrain(raw: dict) -> Any:
    """params.yaml's pretrain section as the DAG trains it: with model.size from_ladder, at the shape and
    steps of the committed choice (reports/scaling/choice.json)."""
    from scratchlm.config.training import PretrainParams
    from scratchlm.scaling.chosen import apply_choice, read_choice

    params = PretrainParams(**raw["pretrain"])
    if params.model.size == "from_ladder":
        params = apply_choice(params, read_choice(Path("reports/scaling/choice.json")))
    return params
