"""Guard tests (as datasette has): every hookspec has a test and is documented in docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from stageflow import hookspecs
from stageflow.stages import KINDS

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name for name, fn in vars(hookspecs).items() if name.startswith("register_") and inspect.isfunction(fn)
)


#: Hooks that register no stage kind (the CLI calls register_commands itself at startup).
NON_KIND_HOOKS = {"register_commands"}


def test_every_kind_has_a_hook_and_every_hook_a_kind():
    assert [h for h in HOOKS if h not in NON_KIND_HOOKS] == sorted(f"register_{k}" for k in KINDS)


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook):
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"def test_hook_{hook}\b", tests), f"no test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook):
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)  # names, not annotations
    signature = f"{hook}({params})"
    assert f"### `{signature}`" in docs, f"docs/plugins.md lacks a '### `{signature}`' section"
