"""Per-model environments for worker mode, built with uv and cached under
``envs/<hash of the requirements>/``.

An environment reuses the current one (torch and friends are never downloaded again):
a ``.pth`` file adds the current site-packages *after* the environment's own, so
only what the record needs and the current environment lacks or has at a clashing
version is installed into it, and those installed packages win. uv installs each
round with ``--no-deps``; the dependencies still missing are found by running
:mod:`.reqs` inside the new environment, and installed in the next round.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import EnvironmentBuildError
from .reqs import unsatisfied

log = logging.getLogger(__name__)

MARKER = "synthmed-env.json"
MAX_ROUNDS = 8


@dataclass(frozen=True)
class EnvOptions:
    """How uv may fetch packages: ``offline`` (cache and find-links only), extra
    ``find_links`` folders or URLs, an ``index_url``, and uv's own cache folder."""

    offline: bool = False
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    no_index: bool = False
    cache_dir: str | None = None
    timeout_s: float = 900.0
    extra_args: tuple[str, ...] = field(default=())

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.offline:
            args.append("--offline")
        for fl in self.find_links:
            args += ["--find-links", fl]
        if self.no_index:
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        if self.cache_dir:
            args += ["--cache-dir", self.cache_dir]
        return args + list(self.extra_args)


def find_uv() -> str:
    try:
        from uv import find_uv_bin  # the uv wheel ships the binary

        return str(find_uv_bin())
    except Exception:  # noqa: BLE001 - any failure means "look elsewhere"
        pass
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found:
        return found
    raise EnvironmentBuildError("uv is not installed, so no model environment can be built",
                                hint="pip install uv (or run the model with --mode inline)")


def parent_site_dirs() -> list[str]:
    return [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]


def env_key(requirements: Sequence[str]) -> str:
    data = {
        "requirements": sorted(requirements),
        "python": list(sys.version_info[:3]),
        "parent": sys.prefix,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str], what: str, timeout: float, env: dict[str, str] | None = None) -> str:
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentBuildError(f"{what}: timed out after {timeout:.0f}s", hint="check the network or the index") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise EnvironmentBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}",
                                    hint="check the record's package.requirements; offline sites need the wheels "
                                         "in uv's cache or a find-links folder")
    return proc.stdout


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def _missing(python: Path, requirements: Sequence[str], timeout: float) -> list[str]:
    out = _run([str(python), "-m", "synthmed.registry.runner.reqs", *requirements],
               "checking the environment's requirements", timeout)
    result: list[str] = json.loads(out.strip().splitlines()[-1])
    return result


def build_env(requirements: Sequence[str], envs_dir: Path, options: EnvOptions | None = None,
              *, model: str = "") -> Path:
    """The python of an environment satisfying ``requirements`` (built once, then cached)."""
    opts = options or EnvOptions()
    reqs = list(requirements)
    key = env_key(reqs)
    env_dir = envs_dir / key
    envs_dir.mkdir(parents=True, exist_ok=True)
    lock_path = envs_dir / f".{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # avoids duplicate work only; the marker says "done"
        if (env_dir / MARKER).is_file() and env_python(env_dir).exists():
            return env_python(env_dir)
        if env_dir.exists():
            log.info("removing the incomplete environment %s", env_dir)
            shutil.rmtree(env_dir)
        what = f"building the environment for {model or 'a model'} in {env_dir}"
        log.info("%s: %s", what, ", ".join(reqs) or "(no requirements)")
        started = time.monotonic()
        try:
            uv = find_uv()
            _run([uv, "venv", "--quiet", "--python", sys.executable, *( ["--cache-dir", opts.cache_dir] if opts.cache_dir else []),
                  str(env_dir)], what + " (uv venv)", opts.timeout_s)
            python = env_python(env_dir)
            site_dir = _site_packages(python)
            lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs()]
            (site_dir / "_synthmed_parent.pth").write_text("\n".join(lines) + "\n")
            todo = unsatisfied(reqs)
            for _ in range(MAX_ROUNDS):
                if not todo:
                    break
                _run([uv, "pip", "install", "--quiet", "--no-deps", "--python", str(python), *opts.uv_args(), *todo],
                     what + f" (uv pip install {' '.join(todo)})", opts.timeout_s)
                todo = _missing(python, reqs, opts.timeout_s)
            else:
                raise EnvironmentBuildError(f"{what}: still unsatisfied after {MAX_ROUNDS} rounds: {', '.join(todo)}")
            (env_dir / MARKER).write_text(json.dumps({
                "requirements": reqs, "python": sys.version.split()[0], "parent": sys.prefix,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 2),
            }, indent=2) + "\n")
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        return env_python(env_dir)
