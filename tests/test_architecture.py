"""The floors of the house, checked over the AST of every import (lazy ones inside functions included).

Written rules (docs/architecture.md "Floors"): the core never imports plugins, flows or the top floor
(the CLI, its command groups, ``entry`` and the start-up fast paths); plugins never import flows or the
top floor; flows never import a plugin module or the top floor. The internal import graph has no cycle.

Run as a script (``python tests/test_architecture.py``) it prints the measurements the issue tracks:
wrong-way imports, import cycles, modules over 400 lines and the share of internal imports that sit
inside functions.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Source folder -> the package name it installs as (pyproject.toml [tool.setuptools.package-dir]).
SOURCE_ROOTS = {
    "src/stageflow": "stageflow",
    "flows": "stageflow.flows",
    "plugins": "stageflow.plugins",
    "blocks": "stageflow.blocks",
    "deployments": "stageflow.deployments",
    "samples": "stageflow.samples",
}

#: The top floor: what a user's command line enters through. Nothing below may import it.
TOP = ("stageflow.cli", "stageflow.commands", "stageflow.entry", "stageflow.fast", "stageflow.deployments")
FLOWS = ("stageflow.flows",)
PLUGINS = ("stageflow.plugins",)
BLOCKS = ("stageflow.blocks",)

#: Imports that break a rule on purpose, each with its reason. Keep this empty.
EXCEPTIONS: dict[tuple[str, str], str] = {}

MAX_LINES = 400


def floor(module: str) -> str:
    def under(prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if under(TOP):
        return "top"
    if under(FLOWS):
        return "flows"
    if under(PLUGINS):
        return "plugins"
    if under(BLOCKS):
        return "blocks"
    return "core"


#: floor -> floors it must never import
FORBIDDEN = {
    "core": {"plugins", "flows", "top"},
    "plugins": {"flows", "top"},
    "flows": {"plugins", "top"},
    "blocks": {"plugins", "flows", "top"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported internal module
    line: int
    lazy: bool  # inside a function body


def modules() -> dict[str, Path]:
    """Every internal module name -> its file."""
    out: dict[str, Path] = {}
    for folder, package in SOURCE_ROOTS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [] if rel.parts == ("__init__",) else list(rel.parts)
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The internal module ``name`` loads (the longest known prefix), or None if not ours."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(known: dict[str, Path] | None = None) -> list[Import]:
    known = known or modules()
    out: list[Import] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"

        def visit(node: ast.AST, lazy: bool, module: str = module, is_pkg: bool = is_pkg) -> None:
            for child in ast.iter_child_nodes(node):
                inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        target = _resolve(alias.name, known)
                        if target and target != module:
                            out.append(Import(module, target, child.lineno, lazy))
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = module.split(".") if is_pkg else module.split(".")[:-1]
                        base = base[: len(base) - (child.level - 1)]
                        prefix = ".".join(base + ([child.module] if child.module else []))
                    else:
                        prefix = child.module or ""
                    targets = {_resolve(f"{prefix}.{alias.name}", known) for alias in child.names}
                    for target in sorted(t for t in targets if t and t != module):
                        out.append(Import(module, target, child.lineno, lazy))
                visit(child, inner)

        visit(tree, False)
    return out


def wrong_way(found: list[Import]) -> list[Import]:
    return [
        i
        for i in found
        if floor(i.target) in FORBIDDEN.get(floor(i.source), set()) and (i.source, i.target) not in EXCEPTIONS
    ]


def cycles(found: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), lazy imports included."""
    graph: dict[str, set[str]] = {}
    for i in found:
        graph.setdefault(i.source, set()).add(i.target)
        graph.setdefault(i.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def long_modules(known: dict[str, Path] | None = None) -> dict[str, int]:
    known = known or modules()
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in known.items()}
    return {m: n for m, n in sorted(sizes.items(), key=lambda kv: -kv[1]) if n > MAX_LINES}


def report() -> str:
    known = modules()
    found = imports(known)
    bad = wrong_way(found)
    cyc = cycles(found)
    big = long_modules(known)
    lazy = sum(i.lazy for i in found)
    lines = [f"internal imports: {len(found)}, inside functions: {lazy} ({lazy / len(found):.0%})"]
    lines.append(f"wrong-way imports: {len(bad)}")
    lines += [f"  {i.source}:{i.line} -> {i.target}{' (lazy)' if i.lazy else ''}" for i in bad]
    lines.append(f"import cycles (strongly connected groups): {len(cyc)}")
    lines += [f"  {' <-> '.join(c)}" for c in cyc]
    lines.append(f"modules over {MAX_LINES} lines: {len(big)}")
    lines += [f"  {m}: {n}" for m, n in big.items()]
    return "\n".join(lines)


def test_no_import_runs_down_the_wrong_way():
    bad = wrong_way(imports())
    assert not bad, "imports against the floors (docs/architecture.md):\n" + "\n".join(
        f"{i.source}:{i.line} imports {i.target} ({floor(i.source)} -> {floor(i.target)})" for i in bad
    )


def test_no_import_cycles():
    cyc = cycles(imports())
    assert not cyc, "import cycles (lazy imports included):\n" + "\n".join(" <-> ".join(c) for c in cyc)


def test_exceptions_are_still_needed():
    found = {(i.source, i.target) for i in imports()}
    stale = [pair for pair in EXCEPTIONS if pair not in found]
    assert not stale, f"EXCEPTIONS lists imports that no longer exist: {stale}"


def test_the_scanner_sees_lazy_and_relative_imports(tmp_path):
    """The scanner itself: a lazy import, a relative import and a wrong-way import are all found."""
    found = imports()
    assert any(i.lazy for i in found) and any(not i.lazy for i in found)
    assert floor("stageflow.sync.engine") == "core" and floor("stageflow.plugins.sinks") == "plugins"
    assert floor("stageflow.entry") == "top" and floor("stageflow.flows.video") == "flows"
    fake = [Import("stageflow.sync.engine", "stageflow.cli", 1, True)]
    assert wrong_way(fake) == fake
    assert cycles([Import("a", "b", 1, False), Import("b", "a", 1, True)]) == [["a", "b"]]


#: Shared rooms (#19 item 6): the store kernel, its schema and the service plumbing serve every
#: family and import none of them.
SHARED = ("stageflow.store", "stageflow.migrations", "stageflow.services")
FAMILIES = ("stageflow.video", "stageflow.sync", "stageflow.build", "stageflow.commerce", "stageflow.monitor")


def test_shared_rooms_import_no_family():
    def under(module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    bad = [i for i in imports() if under(i.source, SHARED) and under(i.target, FAMILIES)]
    assert not bad, "a shared room imports a family:\n" + "\n".join(
        f"{i.source}:{i.line} imports {i.target}" for i in bad
    )


def test_every_package_is_listed_in_pyproject():
    """A package folder missing from [tool.setuptools] packages is left out of the wheel (its
    imports work in an editable install and fail in a real one)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    )
    found = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


if __name__ == "__main__":
    print(report())
