"""Walking a folder a user may have filled with links: manifests, the audit and `tree_sha256` list each path
once, never enter a link to a folder (a loop cannot run), and name each link they leave out in one line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from scratchlm.io import list_files, tree_sha256, walk_tree


def folder_with_links(root: Path) -> Path:
    (root / "out" / "sub").mkdir(parents=True)
    (root / "out" / "a.bin").write_bytes(b"a")
    (root / "out" / "sub" / "b.bin").write_bytes(b"b")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "x.bin").write_bytes(b"x")
    (root / "out" / "sub" / "up").symlink_to("..")  # a loop to the folder itself
    (root / "out" / "sub" / "up2").symlink_to("..")  # two of them: exponentially many paths
    (root / "out" / "to_sub").symlink_to("sub")  # a sibling inside
    (root / "out" / "away").symlink_to(root / "elsewhere")  # a folder outside
    (root / "out" / "cached.bin").symlink_to(root / "elsewhere" / "x.bin")  # as DVC's symlink cache type links
    (root / "out" / "gone").symlink_to("nothing")
    return root / "out"


def test_list_files_never_enters_a_link_to_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = folder_with_links(tmp_path)
    started = time.monotonic()
    files = list_files(out)
    assert time.monotonic() - started < 10
    assert [p.relative_to(out).as_posix() for p in files] == ["a.bin", "cached.bin", "sub/b.bin"]
    assert (out / "cached.bin").read_bytes() == b"x", "a link to a file is listed with its target's bytes"
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines) == sorted([
        f"warning: {out / 'away'} -> {tmp_path / 'elsewhere'}: a link to a folder, not followed",
        f"warning: {out / 'gone'} -> nothing: a link to nothing, skipped",
        f"warning: {out / 'sub' / 'up'} -> ..: a link to a folder, not followed",
        f"warning: {out / 'sub' / 'up2'} -> ..: a link to a folder, not followed",
        f"warning: {out / 'to_sub'} -> sub: a link to a folder, not followed",
    ])
    assert tree_sha256(out) and list_files(out) == files
    assert capsys.readouterr().err == "", "each link is named once per process"


def test_walk_tree_enters_each_real_folder_once(tmp_path: Path) -> None:
    out = folder_with_links(tmp_path)
    entries = list(walk_tree(out))
    assert len({entry.rel for entry in entries}) == len(entries)
    links = {entry.rel: (entry.kind, entry.link) for entry in entries if entry.link is not None}
    assert links == {"sub/up": ("dir", ".."), "sub/up2": ("dir", ".."), "to_sub": ("dir", "sub"),
                     "away": ("dir", str(tmp_path / "elsewhere")), "cached.bin": ("file", str(tmp_path / "elsewhere"
                                                                                              / "x.bin")),
                     "gone": ("broken", "nothing")}
    assert [e.rel for e in walk_tree(out, lambda parts: parts != ("sub",)) if e.kind == "file"] == ["a.bin", "cached.bin"]


def test_list_files_matches_what_it_listed_before(tmp_path: Path) -> None:
    """Without links, the same listing as `rglob` (hidden names, deep folders, the sort by relative path)."""
    for name in ("b", "a-b/c", "a/b", ".hidden/x", "a/.y", "z/z/z/z"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    os.mkfifo(tmp_path / "fifo")
    expected = sorted((p for p in tmp_path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(tmp_path).as_posix())
    assert list_files(tmp_path) == expected and len(expected) == 6
