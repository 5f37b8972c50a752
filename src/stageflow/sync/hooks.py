"""Post-deploy hooks: the runner that calls the deploy_hooks backends in order and stops at the first
failure. The context handed to each hook and its outcome are contracts
(:mod:`stageflow.contracts.deploy`), re-exported here.

The runner never rolls anything back itself (the engine does) and never logs hook secrets: a hook's
detail line is what the hook chose to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stageflow.contracts.deploy import DeployContext as DeployContext
from stageflow.contracts.deploy import HookOutcome as HookOutcome
from stageflow.errors import StageflowError


@dataclass
class PlannedHook:
    name: str
    backend: Any


def run_hooks(hooks: list[PlannedHook], context: DeployContext) -> list[HookOutcome]:
    """Run hooks in order; after a failure the rest are reported as skipped."""
    outcomes: list[HookOutcome] = []
    failed = False
    for hook in hooks:
        if failed:
            outcomes.append(HookOutcome(hook.name, "skipped", "an earlier hook failed"))
            continue
        try:
            result = hook.backend.run(context)
        except StageflowError as exc:
            result = HookOutcome(hook.name, "failed", str(exc))
        except OSError as exc:
            result = HookOutcome(hook.name, "failed", f"{type(exc).__name__}: {exc.strerror or exc}")
        if not isinstance(result, HookOutcome):
            result = HookOutcome(hook.name, "ok", str(result or ""))
        outcomes.append(result)
        context.log(f"hook {result.name}: {result.status}" + (f" ({result.detail})" if result.detail else ""))
        failed = result.status == "failed"
    return outcomes
