"""The worker process: ``python -m synthmed.registry.runner.worker``.

It loads one model and answers ``sample`` requests over its stdin/stdout (see
:mod:`.protocol`). The protocol uses private copies of the original stdin/stdout
descriptors; fd 0 becomes /dev/null and fd 1 is pointed at stderr, so a model that
prints cannot corrupt the protocol. ``faulthandler`` writes a native crash's
traceback to stderr, which the caller keeps for its error message.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from ..records import Record
from . import protocol
from .formats import load_model, normalise_outputs


def _private_channels() -> tuple[int, BinaryIO]:
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return in_fd, os.fdopen(out_fd, "wb", buffering=1 << 16)


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def main() -> int:
    faulthandler.enable(file=sys.stderr, all_threads=True)
    in_fd, out = _private_channels()

    model: Any = None
    record: Any = None
    while True:
        try:
            msg = protocol.receive(in_fd)
        except (protocol.ChannelClosed, EOFError):
            return 0
        op = msg.get("op")
        try:
            if op == "load":
                record = Record(data=msg["record"], path=msg.get("record_path", "<worker>"))
                if msg.get("torch_threads"):
                    import torch

                    torch.set_num_threads(int(msg["torch_threads"]))
                model = load_model(record, Path(msg["package_dir"]), msg["device"], msg.get("package_key"),
                                   int(msg.get("medigan_chunk", 16)))
                protocol.send(out, {"ok": True, "pid": os.getpid(), "python": sys.executable})
            elif op == "sample":
                if model is None:
                    raise RuntimeError("no model loaded")
                seeds = list(msg["seeds"])
                outputs = normalise_outputs(record, seeds, model.sample(seeds, **msg.get("params", {})))
                protocol.send(out, {"ok": True, "outputs": outputs})
            elif op == "close":
                if model is not None and hasattr(model, "close"):
                    model.close()
                protocol.send(out, {"ok": True})
                return 0
            else:
                protocol.send(out, {"ok": False, "error": "ProtocolError", "message": f"unknown op {op!r}",
                                    "traceback": ""})
        except Exception as exc:  # noqa: BLE001 - every model error goes back to the caller
            sys.stderr.flush()
            protocol.send(out, _error(exc))


if __name__ == "__main__":
    sys.exit(main())
