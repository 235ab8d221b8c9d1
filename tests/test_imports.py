"""The import graph of synthmed's own modules.

- Layers: the rules of docs/design.md ("Layers and who may import whom", and the numbered
  layers inside ``synthmed.registry``) are import-linter contracts in pyproject.toml;
  :func:`test_layer_contracts` runs them (``scripts/lint_imports.py``) and fails with
  lint-imports's report.
- What import-linter does not check, read here with :mod:`ast` (nothing is imported):
  no cycle between modules, counting every import (module level, inside functions and under
  ``if TYPE_CHECKING:``); and an import inside a function is for a heavy third-party module
  only, or for one of the synthmed imports allowed below (each with its reason).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: pyproject.toml's package-dir: dotted package -> folder
PACKAGE_DIRS = {
    "synthmed": ROOT / "sdk",
    "synthmed.registry": ROOT / "registry",
    "synthmed.daemon": ROOT / "daemon",
    "synthmed.serve": ROOT / "serve",
}

#: the function-level imports of synthmed modules that are allowed:
#: (importing module, or a package prefix ending in "."; imported module, or "*") -> why
LAZY_SYNTHMED_ALLOWED = {
    # each CLI sub-command imports what it runs when it runs: `synthmed --help` and
    # `synthmed search` load neither the daemon nor the runner nor torch
    ("synthmed.cli.", "*"): "CLI sub-commands import their library code when they run",
    # PEP 562 attributes: `import synthmed` stays light (no catalog, no torch)
    ("synthmed", "*"): "synthmed/__init__.py resolves Generators and Site on first use",
    # datasets.py subclasses torch's Dataset: only the torch-facing methods load torch
    ("synthmed.generators", "synthmed.datasets"): "Generators loads torch only for datasets and grids",
    ("synthmed.published", "synthmed.published_torch"): "a published dataset loads torch only for its torch Dataset",
    # the extractor networks are torch modules: built only when an extractor is loaded
    ("synthmed.registry.measuring.extractors", "synthmed.registry.measuring.extractor_nets"): "extractor networks load torch only when built",
}


@dataclass(frozen=True)
class Imp:
    importer: str
    target: str
    line: int
    lazy: bool  # inside a function


def _module_name(path: Path) -> str:
    best = max((p for p, d in PACKAGE_DIRS.items() if d in path.parents), key=lambda p: len(PACKAGE_DIRS[p].parts))
    rel = path.relative_to(PACKAGE_DIRS[best]).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([best, *parts])


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder in PACKAGE_DIRS.values():
        for path in sorted(folder.rglob("*.py")):
            name = _module_name(path)
            # a nested package folder mapped elsewhere (sdk/ holds no registry/) belongs to its own entry
            out.setdefault(name, path)
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _known(dotted: str) -> str | None:
    """The synthmed module that ``dotted`` names (a module, or an attribute of one)."""
    while dotted:
        if dotted in MODULES:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _imports(name: str) -> list[Imp]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[Imp] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "synthmed" or alias.name.startswith("synthmed."):
                        target = _known(alias.name)
                        assert target, f"{name}:{child.lineno}: import of unknown module {alias.name}"
                        found.append(Imp(name, target, child.lineno, lazy))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    if child.level > 1:
                        base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if not (mod == "synthmed" or mod.startswith("synthmed.")):
                    continue
                for alias in child.names:
                    # `from pkg import submodule` imports the submodule; `from mod import name` the module
                    target = _known(f"{mod}.{alias.name}") if f"{mod}.{alias.name}" in MODULES else _known(mod)
                    assert target, f"{name}:{child.lineno}: import of unknown module {mod}"
                    found.append(Imp(name, target, child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return [i for i in found if i.target != name]


IMPORTS = [imp for name in MODULES for imp in _imports(name)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        graph[imp.importer].add(imp.target)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE:
            cycle = dfs(start)
            if cycle:
                return cycle
    return None


def test_the_scan_sees_the_package() -> None:
    # guards the test itself: the mapping finds modules of every layer and their imports
    assert {"synthmed", "synthmed.cli", "synthmed.registry.catalog", "synthmed.daemon.service"} <= set(MODULES)
    assert any(i.importer == "synthmed.registry.catalog" and i.target == "synthmed.registry.errors" for i in IMPORTS)
    assert any(i.importer.startswith("synthmed.daemon.") and i.target.startswith("synthmed.registry.") for i in IMPORTS)


def test_no_import_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layer_contracts() -> None:
    # import-linter's contracts in pyproject.toml, run on the package laid out as installed
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, "lint-imports: a layer rule of docs/design.md is broken\n" + run.stdout + run.stderr
    assert "0 broken" in run.stdout


def _lazy_allowed(imp: Imp) -> bool:
    return any((imp.importer == who or (who.endswith(".") and imp.importer.startswith(who)))
               and what in ("*", imp.target) for who, what in LAZY_SYNTHMED_ALLOWED)


def test_function_level_imports_of_synthmed_are_the_allowed_ones() -> None:
    bad = [f"{i.importer}:{i.line} imports {i.target} inside a function" for i in IMPORTS
           if i.lazy and not _lazy_allowed(i)]
    assert not bad, "import these at module level (or break the cycle that made them lazy):\n" + "\n".join(bad)
