"""Typed plugin access and kind-subset loading in the kernel: ``manager.<kind>`` is a typed registry,
``load_plugins(kinds=...)`` loads only the built-in modules of those kinds (what the engines ask for
through ``plugins_for``), and the kernel's table of which built-in module registers which kinds
matches the modules."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from stageflow.errors import PluginError
from stageflow.plugin_manager import (
    builtin_kinds,
    get_plugin_manager,
    load_plugins,
    plugins_for,
)
from stageflow.stages import KINDS, Notifier, Sink

ROOT = Path(__file__).resolve().parents[1]


def test_every_kind_has_a_typed_accessor():
    manager = load_plugins()
    for kind in KINDS:
        assert getattr(manager, kind) is manager.registry(kind)


def test_typed_accessor_builds_the_kinds_protocol(tmp_path):
    manager = load_plugins()
    sink = manager.sinks.build("jsonl", {"directory": str(tmp_path)})
    assert isinstance(sink, Sink) and sink.write("t", [{"id": 1}]) == 1
    assert isinstance(manager.notifiers.build("log"), Notifier)


def test_kind_subset_loads_only_those_builtin_modules():
    manager = load_plugins(kinds=["build_runners", "build_caches"])
    builtin = sorted(p.name for p in manager.loaded if p.builtin)
    assert builtin == ["build_caches", "build_runners"]
    assert manager.build_runners.names() == ["npm", "pnpm", "yarn"]
    with pytest.raises(PluginError, match="'sinks' was not loaded"):
        manager.sinks.build("jsonl", {"directory": "x"})
    with pytest.raises(PluginError, match="unknown stage kind"):
        load_plugins(kinds=["translators"])


def test_a_module_that_registers_several_kinds_loads_for_each():
    assert {p.name for p in load_plugins(kinds=["sinks"]).loaded if p.builtin} == {"sinks", "gsheets"}
    notifiers = load_plugins(kinds=["notifiers"])
    assert notifiers.notifiers.names() == ["log", "slack"]


def test_plugins_for_is_cached_and_reuses_the_full_manager():
    first = plugins_for({"transports", "deploy_hooks"})
    assert plugins_for(["deploy_hooks", "transports"]) is first
    assert get_plugin_manager.cache_info().currsize == 0  # the full manager was not built
    full = get_plugin_manager()
    assert plugins_for({"transports"}) is full


def test_builtin_kind_table_matches_the_plugin_modules():
    """Each built-in entry point registers exactly the kinds the kernel thinks (from its hookimpls)."""
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["stageflow"]
    for name, module in eps.items():
        path = ROOT / "plugins" / f"{module.rpartition('.')[2]}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hooks = {
            node.name.removeprefix("register_")
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            and node.name.startswith("register_")
            and any("hookimpl" in ast.unparse(d) for d in node.decorator_list)
        }
        assert hooks == set(builtin_kinds(name)), f"{name} ({path.name}) registers {sorted(hooks)}"
