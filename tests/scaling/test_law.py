"""scaling_fit's reading of the ladder folder: the named rungs in compute order, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.io import DataFormatError
from scratchlm.scaling.law import read_rungs


def write_rung(ladder: Path, name: str, flops: float) -> None:
    (ladder / name).mkdir(parents=True)
    (ladder / name / "rung.json").write_text(json.dumps({"rung": name, "flops": flops}))


def test_the_named_rungs_come_in_compute_order_and_a_hidden_temp_folder_is_no_rung(tmp_path: Path) -> None:
    write_rung(tmp_path, "b", 2.0)
    write_rung(tmp_path, "a", 3.0)
    (tmp_path / ".a.tmp-123").mkdir()  # what a killed stage leaves beside its output
    assert [r["rung"] for r in read_rungs(tmp_path, ["a", "b"])] == ["b", "a"]


def test_a_missing_rung_and_a_removed_rungs_folder_are_named(tmp_path: Path) -> None:
    write_rung(tmp_path, "a", 1.0)
    with pytest.raises(DataFormatError, match=r"b/rung.json: missing \(run the stage scaling@b first\)"):
        read_rungs(tmp_path, ["a", "b"])
    write_rung(tmp_path, "old", 5.0)  # a rung taken out of scaling.rungs: its folder stays, and DVC would hash it
    with pytest.raises(DataFormatError) as error:
        read_rungs(tmp_path, ["a"])
    assert str(error.value).startswith(f"{tmp_path / 'old'}: the folder of a rung no longer in scaling.rungs")
