"""What a build passes between its steps: the options the user gave, the plan (decided before
anything runs) and the report (what ran, and how each task ended). Plain data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stageflow.build import selection, workspaces
from stageflow.build.config import BuildConfig
from stageflow.build.model import TaskResult

STATE_DIR = ".stageflow"


@dataclass
class BuildOptions:
    """What the user asked for (CLI flags / flow parameters)."""

    repo: Path
    base: str | None = None
    head: str = "HEAD"
    committed_only: bool = False
    filters: Sequence[str] = ()
    role: str | None = None
    task: str | None = None
    concurrency: int | None = None
    fail_fast: bool = False
    dry_run: bool = False
    force: bool = False  # ignore cache hits (still store)
    warm_tsc: bool | None = None  # False: --no-warm-tsc (sets the runner's warm_tsc option)


@dataclass
class BuildPlan:
    """Everything decided before anything runs."""

    options: BuildOptions
    config: BuildConfig
    graph: workspaces.WorkspaceGraph
    selection: selection.Selection
    order: list[list[str]]
    hashes: dict[str, str]
    outputs: dict[str, list[str]]
    chains: dict[str, list[tuple[str, str]]]
    task: str
    concurrency: int
    memory_mb: int
    warnings: list[str] = field(default_factory=list)
    plan_s: float = 0.0
    #: :func:`up_to_date`'s answers, by workspace: asked when choosing backends, counting the builds
    #: to run and per task, answered once (a workspace's own new state record drops its answer).
    fresh: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state_dir(self) -> Path:
        return self.graph.root / STATE_DIR


@dataclass
class BuildReport:
    plan: BuildPlan
    results: dict[str, TaskResult]
    duration_s: float
    warnings: list[str] = field(default_factory=list)

    def names(self, status: str) -> list[str]:
        return [n for lvl in self.plan.order for n in lvl if self.results[n].status == status]

    @property
    def ok(self) -> bool:
        return not any(r.status in ("failed", "blocked") for r in self.results.values())
