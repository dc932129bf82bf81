"""Links in a local source's folder, through the real download script: the issue's folder (a link to its own
parent) and worse ones finish at once with each file read once; a link leaving the folder stops the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage_cli import error_line, run_stage, set_params

PROSE = "The committee met on a bright morning in the old town hall to discuss the river and the bridge. "


def loopy(cwd: Path, *links: tuple[str, str]) -> None:
    (cwd / "loopy" / "sub").mkdir(parents=True)
    (cwd / "loopy" / "a.txt").write_text(PROSE * 3)
    (cwd / "loopy" / "sub" / "b.txt").write_text(PROSE * 4)
    for link, target in links:
        (cwd / "loopy" / link).symlink_to(target)
    set_params(cwd, {"download": {"sources": None}})
    set_params(cwd, {"download": {"sources": {"loopy": {"kind": "local", "format": "text", "role": "pretrain",
                                                        "members": {"train": "loopy/**/*.txt"}}}}})


@pytest.mark.parametrize("links", [
    [("sub/up", "..")],  # the folder: 82 documents, each file 41 times
    [("sub/up", ".."), ("sub/up2", "..")],  # the paths grew exponentially: download never ended
    [("sub/to_top", ".."), ("to_sub", "sub")],  # a loop through two links
], ids=["self-loop", "two-self-loops", "two-link-loop"])
def test_a_looping_local_folder_downloads_each_file_once(tmp_path: Path, links: list[tuple[str, str]]) -> None:
    loopy(tmp_path, *links)
    result = run_stage(tmp_path, "pipelines.download", "data/raw", timeout=120)  # it used to never end
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "reports" / "runs" / "download.json").read_text())
    assert record["seconds"] < 10, record
    metrics = json.loads((tmp_path / "reports" / "metrics" / "download.json").read_text())
    assert metrics["loopy"]["records"] == 2, metrics
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: download: loopy: ")]
    assert sorted(line.split(" -> ")[0].removeprefix("warning: download: loopy: ") for line in warnings) == \
        sorted(f"loopy/{link}" for link, _ in links)


def test_a_link_leaving_a_local_folder_stops_download_naming_it(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    loopy(tmp_path, ("sub/up", ".."), ("sub/away", str(tmp_path / "elsewhere")))
    line = error_line(run_stage(tmp_path, "pipelines.download", "data/raw", timeout=120))
    assert line.startswith(f"error: download: loopy: loopy/sub/away refused: a link to {tmp_path / 'elsewhere'}, "
                           f"outside the source's folder {tmp_path / 'loopy'}"), line
    assert not (tmp_path / "data" / "raw").exists()
