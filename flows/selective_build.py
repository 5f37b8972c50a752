"""The ``selective_build`` flow: plan (discover, select, hash) -> run (cache restore or build, in
dependency order, in parallel) -> report (a mermaid plan graph and a per-workspace timings table as
Prefect artifacts). Thin wiring: all logic is in :mod:`stageflow.build`, tested without Prefect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from stageflow.build import engine
from stageflow.config import CONFIG_NAME, load_config
from stageflow.errors import JobFailed
from stageflow.orchestration import notify_failure, publish_markdown, publish_table


class SelectiveBuildParams(BaseModel):
    """Parameters of the selective build (shown as a form in the Prefect UI)."""

    repo: str = Field(description="Root of the monorepo")
    base: str | None = Field(default=None, description="Build what changed since this git ref")
    head: str = "HEAD"
    committed_only: bool = False
    filters: list[str] = Field(
        default_factory=list,
        description="Turborepo --filter expressions: NAME, NAME..., ...NAME, [ref], !EXPR",
    )
    role: str | None = None
    task: str | None = Field(default=None, description="Script to run (default: build)")
    concurrency: int | None = Field(default=None, ge=1)
    fail_fast: bool = False
    dry_run: bool = False
    force: bool = False
    config: str | None = Field(default=None, description="stageflow.toml (default: REPO/stageflow.toml)")
    raise_on_failure: bool = Field(default=True, description="End the run Failed when a build fails")
    warm_tsc: bool | None = Field(
        default=None, description="False: every tsc as its own process (default: [build] runner_options)"
    )

    @classmethod
    def from_options(cls, options: engine.BuildOptions, config: Path | None = None) -> SelectiveBuildParams:
        return cls(
            repo=str(options.repo),
            base=options.base,
            head=options.head,
            committed_only=options.committed_only,
            filters=list(options.filters),
            role=options.role,
            task=options.task,
            concurrency=options.concurrency,
            fail_fast=options.fail_fast,
            dry_run=options.dry_run,
            force=options.force,
            warm_tsc=options.warm_tsc,
            config=str(config) if config else None,
        )

    def options(self) -> engine.BuildOptions:
        return engine.BuildOptions(
            repo=Path(self.repo),
            base=self.base,
            head=self.head,
            committed_only=self.committed_only,
            filters=self.filters,
            role=self.role,
            task=self.task,
            concurrency=self.concurrency,
            fail_fast=self.fail_fast,
            dry_run=self.dry_run,
            force=self.force,
            warm_tsc=self.warm_tsc,
        )


@task(name="plan-build", cache_policy=NO_CACHE)
def plan_task(params: SelectiveBuildParams) -> engine.BuildPlan:
    repo = Path(params.repo)
    path = (
        Path(params.config)
        if params.config
        else (repo / CONFIG_NAME if (repo / CONFIG_NAME).is_file() else None)
    )
    return engine.plan(params.options(), load_config(path).build)


@task(name="run-builds", cache_policy=NO_CACHE)
def run_task(plan: engine.BuildPlan) -> engine.BuildReport:
    runner, cache = engine.build_backends(plan)
    return engine.execute(plan, runner, cache)


@task(name="publish-build-report", cache_policy=NO_CACHE)
def publish_task(rep: engine.BuildReport) -> dict[str, Any]:
    doc = engine.report(rep)
    title = "Selective build plan" + (" (dry run)" if doc["dry_run"] else "")
    publish_markdown(
        "selective-build-plan",
        f"# {title}\n\nAffected: {len(doc['affected'])} of {len(doc['workspaces'])} workspaces; "
        f"changed files: {len(doc['changed'])}.\n\n```mermaid\n{engine.mermaid(rep)}\n```\n",
        description="Workspace DAG of this build, affected workspaces highlighted",
    )
    publish_table(
        "selective-build-timings", engine.timings_rows(rep), description="Per-workspace time and cache status"
    )
    return doc


@flow(name="selective-build", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def selective_build(params: SelectiveBuildParams) -> dict[str, Any]:
    """Build only what a change affects, cached and in parallel."""
    plan = plan_task(params)
    rep = run_task(plan)
    doc = publish_task(rep)
    if (doc["failed"] or doc["blocked"]) and params.raise_on_failure:
        raise JobFailed(engine.failure_message(rep))
    return doc
