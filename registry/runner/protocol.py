"""The worker protocol: length-prefixed messages of JSON and numeric arrays over a pair of pipes.

Nothing in a message can run code when it is read: control data is JSON, and arrays are
numpy's ``.npy`` format read with ``allow_pickle=False`` and a dtype from an allowlist
(booleans, integers, floats, complex numbers). The caller reads what a model's worker
writes, and a model's code can write to that pipe itself, so this matters: no pickle ever
crosses it.

A message is an 8-byte big-endian length, then a body: a 4-byte big-endian length and
that many bytes of UTF-8 JSON (an object), then for each array named in the JSON's
``"arrays"`` list an 8-byte big-endian length and an ``.npy`` file of that length.
Requests: ``{"op": "load", ...}``, ``{"op": "sample", "seeds": [...], "params": {...}}``,
``{"op": "close"}``. Answers: ``{"ok": true, ...}`` (a sample's arrays beside it), or
``{"ok": false, "error": type name, "message": str, "traceback": str}``.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time
from typing import Any, BinaryIO, Mapping

import numpy as np

HEADER = struct.Struct(">Q")
JSON_HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 40
#: control data is small; a bigger JSON part is refused before it is parsed
MAX_JSON = 64 << 20
#: numpy dtype kinds an array may have: bool, signed and unsigned integers, floats, complex
ARRAY_KINDS = frozenset("biufc")


class ChannelClosed(EOFError):
    """The other end closed the pipe (it exited or crashed)."""


class ChannelTimeout(TimeoutError):
    """No complete message arrived before the deadline."""


class ProtocolError(ValueError):
    """A message that is not in the protocol's format (or carries what it may not)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot cross the worker protocol (JSON and numeric arrays only)")


def check_array(name: str, arr: Any) -> np.ndarray:
    """``arr`` if it is a numpy array of an allowed dtype, else ProtocolError."""
    if not isinstance(arr, np.ndarray):
        raise ProtocolError(f"array {name!r} is a {type(arr).__name__}, not a numpy array")
    if arr.dtype.hasobject or arr.dtype.kind not in ARRAY_KINDS or arr.dtype.fields is not None:
        raise ProtocolError(f"array {name!r} has dtype {arr.dtype}; only bool, integer, float and complex "
                            "arrays cross the worker protocol")
    return arr


def encode(message: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> bytes:
    """The body of one message (without its 8-byte length)."""
    arrays = dict(arrays or {})
    if "arrays" in message:
        raise ProtocolError("'arrays' is reserved in protocol messages")
    doc = json.dumps({**message, "arrays": list(arrays)}, default=_json_default, allow_nan=True).encode("utf-8")
    parts = [JSON_HEADER.pack(len(doc)), doc]
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, check_array(name, arr), allow_pickle=False)
        data = buf.getvalue()
        parts += [HEADER.pack(len(data)), data]
    return b"".join(parts)


def decode(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(control data, arrays)`` of one message body; ProtocolError for anything else."""
    view = memoryview(body)
    try:
        if len(view) < JSON_HEADER.size:
            raise ProtocolError("a message shorter than its header")
        (n,) = JSON_HEADER.unpack(view[:JSON_HEADER.size])
        if n > MAX_JSON or JSON_HEADER.size + n > len(view):
            raise ProtocolError(f"a JSON part of {n} bytes does not fit the message")
        pos = JSON_HEADER.size + n
        message = json.loads(bytes(view[JSON_HEADER.size:pos]).decode("utf-8"))
        if not isinstance(message, dict):
            raise ProtocolError(f"a message is a JSON object, not {type(message).__name__}")
        names = message.pop("arrays", [])
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names) or len(set(names)) != len(names):
            raise ProtocolError("'arrays' must list distinct names")
        arrays: dict[str, np.ndarray] = {}
        for name in names:
            if pos + HEADER.size > len(view):
                raise ProtocolError(f"array {name!r} is missing")
            (size,) = HEADER.unpack(view[pos:pos + HEADER.size])
            pos += HEADER.size
            if pos + size > len(view):
                raise ProtocolError(f"array {name!r} is cut short")
            stream = io.BytesIO(view[pos:pos + size])
            arr = np.lib.format.read_array(stream, allow_pickle=False)
            if stream.tell() != size:
                raise ProtocolError(f"array {name!r} has trailing bytes")
            arrays[name] = check_array(name, arr)
            pos += size
        if pos != len(view):
            raise ProtocolError("trailing bytes after the last array")
    except ProtocolError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, OverflowError, MemoryError,
            struct.error, EOFError) as exc:
        raise ProtocolError(f"an unreadable message ({type(exc).__name__}: {exc})") from None
    return message, arrays


def send(stream: BinaryIO, message: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
    data = encode(message, arrays)
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


def receive(fd: int, timeout: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one message from a raw file descriptor, waiting at most ``timeout`` seconds:
    ``(control data, arrays)``. ProtocolError for a message not in the format."""
    deadline = None if timeout is None else time.monotonic() + timeout
    (size,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if size > MAX_MESSAGE:
        raise ProtocolError(f"a message of {size} bytes is larger than the limit ({MAX_MESSAGE})")
    return decode(_read_exact(fd, size, deadline))
