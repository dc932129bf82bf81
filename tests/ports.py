"""A free TCP port on 127.0.0.1, for the servers the tests start (and for addresses where nothing listens)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now: the OS picks it, the socket is closed before the caller binds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
