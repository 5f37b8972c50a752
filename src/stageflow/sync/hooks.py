"""Post-deploy hooks: the context handed to each deploy_hooks backend, its outcome, and the runner
that calls them in order and stops at the first failure.

A hook backend may also have ``preflight(context: PreflightContext)``: the safety net calls it on every
configured hook before anything is written, and a ``Refused`` it raises stops the sync (exit 3) as
the role check does (the pm2 hook refuses an ecosystem file naming another environment's apps there).

The runner never rolls anything back itself (the engine does) and never logs hook secrets: a hook's
detail line is what the hook chose to report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageflow.errors import StageflowError

if TYPE_CHECKING:  # annotations only: plugin loading must not pay for manifest/target/pathspec
    from stageflow.sync.manifest import ChangeSet
    from stageflow.sync.profile import EnvironmentProfile, SyncConfig
    from stageflow.sync.target import LocalTarget, SshTarget


@dataclass
class DeployContext:
    """What a hook may act on. ``directory`` is the deployed tree relative to the target root
    ("" in place, "current" in releases mode)."""

    target: LocalTarget | SshTarget
    directory: str
    source: Path
    environment: str
    role: str
    release: str | None
    changes: ChangeSet
    log: Callable[[str], None] = field(default=lambda message: None)

    def path(self, rel: str) -> str:
        """A path relative to the deployed tree, relative to the target root."""
        return f"{self.directory}/{rel}" if self.directory else rel


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


@dataclass(frozen=True)
class HookOutcome:
    name: str
    status: str  # ok | failed | skipped | planned
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


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
