"""Docs and packaging follow the code: the built-in tables are generated from the registry (no
drift), every built-in plugin module is an entry point, and `stageflow plugins` shows every kind's
built-ins; docs/architecture.md states the floor rules the import test enforces."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from stageflow.plugin_manager import load_plugins

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_match_the_registry():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plugin_docs.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def _has_hookimpl(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                if "hookimpl" in ast.unparse(dec):
                    return True
    return False


def test_every_builtin_plugin_module_is_an_entry_point():
    """A plugins/*.py with a hookimpl but no [project.entry-points.stageflow] line would never load
    (and `stageflow plugins` would show its kind as "(none installed)")."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(pyproject["project"]["entry-points"]["stageflow"].values())
    modules = {f"stageflow.plugins.{p.stem}" for p in (ROOT / "plugins").glob("*.py") if _has_hookimpl(p)}
    assert modules, "no built-in plugin module found"
    assert not modules - declared, f"plugin modules without an entry point: {sorted(modules - declared)}"
    assert not declared - modules, f"entry points without a plugin module: {sorted(declared - modules)}"


def test_the_installed_entry_points_are_the_declared_ones():
    """The editable install's metadata is not stale (a new entry point needs `pip install -e .`)."""
    import importlib.metadata as md

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["entry-points"]["stageflow"]
    installed = {
        ep.name: ep.value
        for ep in md.entry_points(group="stageflow")
        if ep.dist is not None and ep.dist.metadata["Name"] == "stageflow"
    }
    assert installed == declared


def test_plugins_command_shows_the_builtins_of_every_kind(capsys):
    """`stageflow plugins` never shows "(none installed)" for a kind that has built-ins."""
    import pytest

    from stageflow.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["plugins", "--json"])
    assert (exit_.value.code or 0) == 0
    doc = json.loads(capsys.readouterr().out)
    manager = load_plugins()
    for kind, registry in manager.registries.items():
        builtins = sorted(s.name for s in registry.specs() if s.distribution == "stageflow")
        shown = sorted(r["name"] for r in doc["kinds"][kind] if r["distribution"] == "stageflow")
        assert builtins, f"kind {kind} has no built-in backend"
        assert shown == builtins, kind


def test_architecture_doc_states_the_floor_rules():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "../shared/DESIGN.md" not in text  # a file outside the repository
    for rule in (
        "The core never imports plugins, flows or the top floor",
        "Plugins never import flows or the top floor",
        "Flows never import a plugin module or the top floor",
        "tests/test_architecture.py",
    ):
        assert rule in text, rule


def test_every_source_package_is_listed_for_setuptools():
    """pyproject.toml lists every subpackage explicitly (setuptools package-dir): a new package
    directory that is not listed works in the editable install and is missing from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join([package, *rel]))
    assert not found - listed, f"packages missing from [tool.setuptools] packages: {sorted(found - listed)}"
