"""Peak memory of this process, importable without torch (a child that measures itself must stay light)."""

from __future__ import annotations

from pathlib import Path


def vm_hwm_mb() -> float:
    """This process image's peak RSS (VmHWM, reset at exec). `ru_maxrss` would also count the memory of the
    parent it was forked from, which here holds the whole corpus."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
