"""The peak MFU is measured against: a CPU probe that shares its core with another process gives no peak
(and so no MFU) rather than a low peak and an MFU that cannot be true."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from scratchlm.training.module import PROBE_SHARE_NEEDED, cpu_probe, peak_tflops


@pytest.fixture
def one_core() -> Iterator[int]:
    """This thread on one core with one torch thread (restored after): what a child process inherits."""
    cpus, threads = os.sched_getaffinity(0), torch.get_num_threads()
    core = min(cpus)
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    yield core
    os.sched_setaffinity(0, cpus)
    torch.set_num_threads(threads)


def test_a_probe_on_a_core_another_process_keeps_busy_gives_no_peak(one_core: int) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # inherits the affinity: the same core
    try:
        assert os.sched_getaffinity(busy.pid) == {one_core}
        peak, source = peak_tflops(None, "32-true", "cpu")
    finally:
        busy.kill()
        busy.wait()
    assert peak is None
    assert source.startswith("not measured: the peak probe had") and "other processes" in source


def test_a_probe_with_its_core_to_itself_counts(one_core: int) -> None:
    tflops, share = cpu_probe(torch.float32, n=256, seconds=0.3)
    assert tflops > 0 and share >= PROBE_SHARE_NEEDED


def test_a_configured_peak_is_taken_as_it_is() -> None:
    assert peak_tflops(0.5, "bf16-mixed", "cpu") == (0.5, "params")
