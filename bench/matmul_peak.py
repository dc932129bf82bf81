"""Measured matmul throughput of this machine with torch on all cores: the reference for MFU.

Prints GFLOP/s for fp32 and bf16 square matmuls and writes reports/bench/matmul_peak.json.
Usage: python bench/matmul_peak.py [--sizes 1024 2048] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from _bench import exclusive_peak_tflops

from scratchlm.launch import usable_cpus


def gflops(n: int, dtype: torch.dtype, seconds: float) -> float:
    return exclusive_peak_tflops(dtype, n, seconds) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default="reports/bench/matmul_peak.json")
    args = parser.parse_args()
    torch.set_num_threads(usable_cpus())
    rows = {f"{name}_{n}": gflops(n, dtype, args.seconds)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)) for n in args.sizes}
    peak = {"fp32": max(v for k, v in rows.items() if k.startswith("fp32")),
            "bf16": max(v for k, v in rows.items() if k.startswith("bf16"))}
    print(f"{'matmul':<12}{'GFLOP/s':>10}")
    for key, value in rows.items():
        print(f"{key:<12}{value:>10.1f}")
    result = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "gflops": rows, "peak_gflops": peak, "date": time.strftime("%Y-%m-%d")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"summary: peak fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s "
          f"(bf16/fp32 {peak['bf16'] / peak['fp32']:.2f}x) on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
