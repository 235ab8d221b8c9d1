"""The caller's side of a worker process: start it, load the model, ask for batches,
and turn a worker that raises, hangs or dies into a clear ModelRunError/ModelTimeout
while the caller carries on."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ModelRunError, ModelTimeout
from ..records import Record
from . import protocol
from .answers import normalise_outputs

log = logging.getLogger(__name__)

STDERR_LINES = 60
LOAD_TIMEOUT_MIN_S = 120.0
WORKER_MODULE = "synthmed.registry.runner.worker"


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _torch_threads() -> int | None:
    """The caller's torch thread count, so a worker computes with the same (None when the
    caller has not imported torch: the worker keeps torch's default)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return int(torch.get_num_threads())
    except Exception:  # noqa: BLE001
        return None


class WorkerClient:
    """One worker process running one model."""

    def __init__(self, record: Record, package_dir: Path, device: str, python: str,
                 *, timeout_s: float | None = None, load_timeout_s: float | None = None,
                 package_key: str | None = None, env: Mapping[str, str] | None = None,
                 chunk: int | None = None, keep_freed_memory: bool = True) -> None:
        self.record = record
        self.package_dir = package_dir
        self.device = device
        self.python = python
        self.timeout_s = timeout_s
        # loading (imports, weights, a cold disk) legitimately takes longer than a batch
        self.load_timeout_s = (load_timeout_s if load_timeout_s is not None
                               else None if timeout_s is None else max(timeout_s, LOAD_TIMEOUT_MIN_S))
        self.package_key = package_key
        #: seeds per call, for a format that serves seeds in chunks (:meth:`PackageFormat.load_chunk`)
        self.chunk = chunk
        #: the worker keeps the memory a batch frees for the next (:mod:`.allocator`)
        self.keep_freed_memory = keep_freed_memory
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._reader: threading.Thread | None = None

    # -- process ---------------------------------------------------------------------

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_tail.append(line)
            log.debug("[%s worker] %s", self.record.ref, line)
        stream.close()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.stderr_tail.clear()
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONFAULTHANDLER", "1")
        env["PYTHONUNBUFFERED"] = "1"
        # -P: nothing from the working directory lands on sys.path; the cwd is neutral too
        self.proc = subprocess.Popen(
            [self.python, "-P", "-m", WORKER_MODULE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=tempfile.gettempdir(), env=env, close_fds=True,
        )
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True,
                                        name=f"synthmed-worker-stderr-{self.proc.pid}")
        self._reader.start()
        try:
            self._request({"op": "load", "record": dict(self.record.data), "record_path": self.record.path,
                           "package_dir": str(self.package_dir), "device": self.device,
                           "package_key": self.package_key, "chunk": self.chunk,
                           "torch_threads": _torch_threads(), "keep_freed_memory": self.keep_freed_memory},
                          self.load_timeout_s, "loading the model")
        except ModelRunError:
            self._kill()
            raise
        log.debug("%s: worker %s ready (%s)", self.record.ref, self.proc.pid, self.python)

    def _kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            log.warning("%s: worker %s did not exit after SIGKILL", self.record.ref, proc.pid)
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=2)
        self.proc = None

    def _tail(self, n: int = 12) -> str:
        lines = [ln for ln in self.stderr_tail if ln.strip()][-n:]
        return "\n".join("    " + (ln if len(ln) <= 200 else ln[:200] + " ...") for ln in lines)

    # -- requests --------------------------------------------------------------------

    def _request(self, msg: dict[str, Any], timeout: float | None, doing: str,
                 arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        ref = self.record.ref
        try:
            protocol.send(proc.stdin, msg, arrays)  # type: ignore[arg-type]
            answer, arrays = protocol.receive(proc.stdout.fileno(), timeout)
        except protocol.ProtocolError as exc:
            # what the worker (the model's code) wrote is not JSON and numeric arrays: read nothing more
            pid = proc.pid
            self._kill()
            raise ModelRunError(
                f"{ref}: the model's worker (pid {pid}) sent a message outside the worker protocol while {doing} "
                f"({exc}); it was stopped and nothing it sent was used",
                hint="the worker protocol carries JSON and numeric arrays only (no pickles, no objects); "
                     f"report it to the model's authors (`synthmed show {ref}`)",
                model=ref, reason=f"protocol: {exc}",
            ) from None
        except protocol.ChannelTimeout:
            pid = proc.pid
            self._kill()
            raise ModelTimeout(
                f"{ref}: the model did not answer within {timeout:g}s while {doing}; its worker (pid {pid}) "
                "was stopped" + (f"\n  last output:\n{self._tail()}" if self._tail() else ""),
                hint="raise the timeout (--timeout / timeout_s) or use a smaller batch size",
                model=ref, reason="timeout", timeout_s=timeout,
            ) from None
        except (protocol.ChannelClosed, BrokenPipeError, ConnectionResetError, OSError) as exc:
            code = proc.wait(timeout=10) if proc.poll() is None else proc.returncode
            if self._reader is not None:
                self._reader.join(timeout=2)
            how = (f"was killed by {_signal_name(code)}" if code is not None and code < 0
                   else f"exited with status {code}")
            tail = self._tail()
            self._kill()
            raise ModelRunError(
                f"{ref}: the model's worker process {how} while {doing}"
                + (f"\n  last output:\n{tail}" if tail else ""),
                hint="the model's code crashed; report it to the model's authors "
                     f"(`synthmed show {ref}`) or try another version",
                model=ref, reason=how, exit_code=code,
            ) from exc
        if answer.get("ok") is not True:
            tb = str(answer.get("traceback", "")).strip().splitlines()
            last = "\n".join("    " + ln for ln in tb[-10:])
            err = answer.get("error", "Exception")
            message = answer.get("message", "")
            raise ModelRunError(
                f"{ref}: the model raised {err} while {doing}: {message}" + (f"\n  traceback (last lines):\n{last}" if last else ""),
                hint=f"check the parameters and the model's documentation (`synthmed show {ref}`)",
                model=ref, reason=f"{err}: {message}", remote_traceback="\n".join(tb),
            )
        answer["arrays"] = arrays
        return answer

    def sample(self, seeds: list[int], params: Mapping[str, Any],
               arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        doing = f"sampling seeds {seeds[0]}..{seeds[-1]}" if seeds else "sampling"
        answer = self._request({"op": "sample", "seeds": list(seeds), "params": dict(params)}, self.timeout_s, doing,
                               arrays)
        # the worker checked them too, but what it sends is checked again here
        return normalise_outputs(self.record, seeds, answer["arrays"])

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory (VmHWM) of the worker process in MiB (Linux /proc); None
        when there is no worker or the figure cannot be read."""
        proc = self.proc
        if proc is None:
            return None
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            pass
        return None

    def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._request({"op": "close"}, 10.0, "closing")
                proc.wait(timeout=10)
            except (ModelRunError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        except Exception:  # noqa: BLE001
            pass
