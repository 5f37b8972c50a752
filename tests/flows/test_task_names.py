"""Every task of the shipped flows has a stable, readable run name (issue 16 item 7): without
``task_run_name`` Prefect appends a random suffix ("review-queue-f7c"), and the run graph and the
task-runs list of the UI no longer say what ran. Checked over the flows' source, so a new task cannot
forget it."""

from __future__ import annotations

import ast
from pathlib import Path

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def _task_decorators(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                func = call.func if call else deco
                if isinstance(func, ast.Name) and func.id == "task":
                    yield node.name, call


def test_every_flow_task_has_a_stable_run_name():
    missing, seen = [], 0
    for path in sorted(FLOWS.glob("*.py")):
        for name, call in _task_decorators(ast.parse(path.read_text(encoding="utf-8"))):
            seen += 1
            keywords = {k.arg for k in call.keywords} if call else set()
            if "task_run_name" not in keywords:
                missing.append(f"{path.name}:{name}")
    assert seen >= 20, f"found only {seen} tasks: the check no longer sees the flows' tasks"
    assert not missing, f"tasks without task_run_name (Prefect adds a random suffix): {missing}"
