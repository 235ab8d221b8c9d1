"""Import a package's code in isolation.

Each package gets a module namespace of its own, ``_synthmed_pkg_<sha256[:20]>``, whose
search path is the package folder only: its modules never come from the current
working directory, never shadow another package's modules of the same name (two
packages may both ship ``model.py``), and relative imports inside the package work.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import threading
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from ..errors import ModelRunError

log = logging.getLogger(__name__)

_lock = threading.Lock()


def namespace_for(package_key: str) -> str:
    key = re.sub(r"[^0-9a-zA-Z]", "_", package_key)[:20] or "anon"
    return f"_synthmed_pkg_{key}"


def _ensure_namespace(name: str, root: Path) -> ModuleType:
    """A synthetic package ``name`` whose only search location is ``root``."""
    mod = sys.modules.get(name)
    if mod is not None:
        paths = list(getattr(mod, "__path__", []))
        if paths and Path(paths[0]).resolve() == root.resolve():
            return mod
        # the same key for another folder (a re-unpacked package): start afresh
        _drop(name)
    init = root / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(root)])
        if spec is None or spec.loader is None:  # pragma: no cover
            raise ModelRunError(f"cannot import the package at {root}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            _drop(name)
            raise
        return mod
    spec = ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    mod = importlib.util.module_from_spec(spec)
    mod.__path__ = [str(root)]
    sys.modules[name] = mod
    return mod


def _drop(prefix: str) -> None:
    for key in [k for k in sys.modules if k == prefix or k.startswith(prefix + ".")]:
        del sys.modules[key]


def import_package_module(root: Path, module: str | None, package_key: str) -> ModuleType:
    """Import ``module`` (dotted, relative to ``root``) under the package's own namespace;
    ``module=None`` imports ``root/__init__.py`` itself (medigan's layout)."""
    name = namespace_for(package_key)
    with _lock:
        pkg = _ensure_namespace(name, root)
        if not module:
            return pkg
        importlib.invalidate_caches()
        return importlib.import_module(f"{name}.{module}")
