"""Post-deploy hooks: the runner that calls the deploy_hooks backends in order and stops at the first
failure. The context handed to each hook and its outcome are contracts
(:mod:`stageflow.contracts.deploy`), re-exported here.

A hook backend may also have ``preflight(context: PreflightContext)``: the safety net calls it on every
configured hook before anything is written, and a ``Refused`` it raises stops the sync (exit 3) as
the role check does (the pm2 hook refuses an ecosystem file naming another environment's apps there).

The runner never rolls anything back itself (the engine does) and never logs hook secrets: a hook's
detail line is what the hook chose to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageflow.contracts.deploy import DeployContext as DeployContext
from stageflow.contracts.deploy import HookOutcome as HookOutcome
from stageflow.errors import StageflowError

if TYPE_CHECKING:  # annotations only: plugin loading must not pay for the config models
    from stageflow.sync.profile import EnvironmentProfile, SyncConfig


@dataclass(frozen=True)
class PreflightContext:
    """What a hook's optional ``preflight`` may read, before the target is even opened: the source
    tree and the sync configuration. A preflight reads only; it raises ``Refused`` to stop the sync."""

    source: Path
    environment: str
    profile: EnvironmentProfile
    config: SyncConfig

    def other_apps(self) -> dict[str, str]:
        """App name -> the other environment that declares it in its ``apps``."""
        return {
            app: name
            for name, p in self.config.environments.items()
            if name != self.environment
            for app in p.apps
        }


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
