"""The worker protocol: length-prefixed pickles over a pair of pipes.

Each message is an 8-byte big-endian length followed by a pickle (protocol 5) of a
dict. Requests: ``{"op": "load", ...}``, ``{"op": "sample", "seeds": [...], "params":
{...}}``, ``{"op": "close"}``. Answers: ``{"ok": True, ...}`` or ``{"ok": False,
"error": type name, "message": str, "traceback": str}``.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")
MAX_MESSAGE = 1 << 40


class ChannelClosed(EOFError):
    """The other end closed the pipe (it exited or crashed)."""


class ChannelTimeout(TimeoutError):
    """No complete message arrived before the deadline."""


def send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=5)
    stream.write(HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = []
    left = n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise ChannelTimeout()
        block = os.read(fd, min(left, 1 << 22))
        if not block:
            raise ChannelClosed()
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def receive(fd: int, timeout: float | None = None) -> Any:
    """Read one message from a raw file descriptor, waiting at most ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    (size,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if size > MAX_MESSAGE:
        raise ChannelClosed()
    return pickle.loads(_read_exact(fd, size, deadline))
