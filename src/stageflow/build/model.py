"""Data of the build engine: per-workspace results. The data that crosses the backend boundary
(workspaces, the tasks handed to a runner, what a runner and a cache answer) is in
:mod:`stageflow.contracts.build`; it is re-exported here so existing imports keep working.

Plain dataclasses only: no I/O, no subprocesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stageflow.contracts.build import BuildOutcome as BuildOutcome
from stageflow.contracts.build import BuildTask as BuildTask
from stageflow.contracts.build import CacheEntryCorrupt as CacheEntryCorrupt
from stageflow.contracts.build import CacheHit as CacheHit
from stageflow.contracts.build import ProcessTracker as ProcessTracker
from stageflow.contracts.build import Workspace as Workspace


@dataclass
class TaskResult:
    """Outcome for one workspace in a run."""

    name: str
    hash: str
    status: str  # built | cached | skipped | failed | blocked | planned
    duration_s: float = 0.0
    cache: str = ""  # hit | miss | up-to-date | "" (not looked up)
    log: str = ""
    exit_code: int | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
