"""The worker process: ``python -m synthmed.registry.runner.worker``.

It loads one model and answers ``sample`` requests over its stdin/stdout (see
:mod:`.protocol`). The protocol uses private copies of the original stdin/stdout
descriptors; fd 0 becomes /dev/null and fd 1 is pointed at stderr, so a model that
prints cannot corrupt the protocol. ``faulthandler`` writes a native crash's
traceback to stderr, which the caller keeps for its error message.

torch is never imported here for its own sake: a model that does not use it starts
without it (importing torch takes seconds). The caller's torch thread count is applied
when the model's code first imports torch (or at once if it already is).
"""

from __future__ import annotations

import faulthandler
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Callable, Sequence

from ..formats import load_model
from ..records import Record
from . import allocator, protocol
from .answers import normalise_outputs


def _private_channels() -> tuple[int, BinaryIO]:
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return in_fd, os.fdopen(out_fd, "wb", buffering=1 << 16)


class _ThenCall(importlib.abc.Loader):
    """Runs the real loader, then ``callback(module)``; the module keeps the real loader."""

    def __init__(self, loader: importlib.abc.Loader, callback: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        self.loader.exec_module(module)
        self.callback(module)


class _OnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for the one top-level module ``name`` it takes the spec the
    other finders give and wraps its loader in :class:`_ThenCall` (once, then leaves)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenCall(spec.loader, self.callback)
        return spec


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """``callback(module)`` as soon as the top-level module ``name`` is imported: now if it
    already is, else right after whoever imports it first has run its ``__init__``."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    else:
        sys.meta_path.insert(0, _OnImport(name, callback))


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
            msg, arrays = protocol.receive(in_fd)
        except (protocol.ChannelClosed, EOFError):
            return 0
        except protocol.ProtocolError as exc:  # the caller speaks another protocol: nothing to answer
            sys.stderr.write(f"synthmed worker: {exc}\n")
            return 2
        op = msg.get("op")
        try:
            if op == "load":
                record = Record(data=msg["record"], path=msg.get("record_path", "<worker>"))
                if msg.get("torch_threads"):
                    threads = int(msg["torch_threads"])
                    when_imported("torch", lambda torch: torch.set_num_threads(threads))
                chunk = msg.get("chunk")
                if msg.get("keep_freed_memory"):
                    allocator.keep_freed_memory()
                model = load_model(record, Path(msg["package_dir"]), msg["device"], msg.get("package_key"),
                                   None if chunk is None else int(chunk))
                protocol.send(out, {"ok": True, "pid": os.getpid(), "python": sys.executable})
            elif op == "sample":
                if model is None:
                    raise RuntimeError("no model loaded")
                seeds = list(msg["seeds"])
                outputs = normalise_outputs(record, seeds, model.sample(seeds, **msg.get("params", {}), **arrays))
                protocol.send(out, {"ok": True}, outputs)  # numeric arrays only, never a pickle
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
