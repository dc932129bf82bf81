"""Real data-only wheels for the fetch tests: members, hostile entries, and a lying zip directory."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

WHEEL = "datapkg-1.0-py3-none-any.whl"


def make_wheel(folder: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A real (data-only) wheel: members, optional symlink entries, and a minimal .dist-info."""
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        for member, link_target in (symlinks or {}).items():
            info = zipfile.ZipInfo(member)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, link_target)
        zf.writestr("datapkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: datapkg\nVersion: 1.0\n")
        zf.writestr("datapkg-1.0.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("datapkg-1.0.dist-info/RECORD", "")
    return path


def declare_size(wheel: Path, entry: str, size: int) -> None:
    """Make the central directory lie about `entry`'s uncompressed size (as a zip bomb would)."""
    data = bytearray(wheel.read_bytes())
    header = data.rfind(b"PK\x01\x02", 0, data.rfind(entry.encode()))
    struct.pack_into("<I", data, header + 24, size)
    wheel.write_bytes(bytes(data))
