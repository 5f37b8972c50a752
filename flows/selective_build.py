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
from stageflow.orchestration import PARTIAL, notify_failure, publish_markdown, publish_table
from stageflow.runconfig import resolve_params


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
    config: str | None = Field(
        default=None, description="stageflow.toml (default: STAGEFLOW_CONFIG, else REPO/stageflow.toml)"
    )
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


@task(name="plan-build", task_run_name="plan-build", cache_policy=NO_CACHE)
def plan_task(params: SelectiveBuildParams) -> engine.BuildPlan:
    repo = Path(params.repo)
    path = (
        Path(params.config)
        if params.config
        else (repo / CONFIG_NAME if (repo / CONFIG_NAME).is_file() else None)
    )
    return engine.plan(params.options(), load_config(path).build)


@task(name="run-builds", task_run_name="run-builds", cache_policy=NO_CACHE)
def run_task(plan: engine.BuildPlan) -> engine.BuildReport:
    runner, cache = engine.build_backends(plan)
    return engine.execute(plan, runner, cache)


#: Lines of a failing workspace's log carried in its task's error (the whole log is in the timings
#: artifact's workspace row and in $REPO/.stageflow).
LOG_TAIL_LINES = 40


@task(name="workspace", task_run_name="build {name}", cache_policy=NO_CACHE)
def workspace_task(name: str, status: str, reason: str, duration_s: float, log: str) -> Any:
    """One workspace's outcome as its own task run (named ``build <workspace>``): Failed with the
    tail of its log when its build failed, else Completed with a state named for what happened
    (Built, Cached, Skipped, Blocked by a failed dependency). The builds themselves ran in parallel
    in ``run-builds``; the per-workspace times are in the timings artifact."""
    from prefect.states import Completed

    if status == "failed":
        tail = "\n".join(log.rstrip().splitlines()[-LOG_TAIL_LINES:]) or "(no output)"
        raise JobFailed(
            f"{name}: build failed ({reason}) after {duration_s:.1f} s; last lines of its log:\n{tail}"
        )
    detail = f"{name}: {status}" + (f" ({reason})" if reason else "") + f" in {duration_s:.1f} s"
    return Completed(name=status.capitalize(), message=detail, data={"workspace": name, "status": status})


def workspace_tasks(rep: engine.BuildReport) -> list[Any]:
    """A task run per workspace of the run, in build order (dependencies first)."""
    states = []
    for level in rep.plan.order:
        for name in level:
            r = rep.results.get(name)
            if r is None or r.status == "planned":
                continue
            states.append(workspace_task(r.name, r.status, r.reason, r.duration_s, r.log, return_state=True))
    return states


def failure_message(rep: engine.BuildReport) -> str:
    """One line for the run's Failed state, pointing at the failing workspace's task run."""
    failed = rep.names("failed")
    blocked = rep.names("blocked")
    first = rep.results[failed[0]] if failed else None
    last = ("\n".join(first.log.rstrip().splitlines()[-1:]) or "no output").strip() if first else ""
    head = f"build failed: {first.name} ({first.reason}): {last}" if first else "build incomplete"
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    extra = f"; {len(blocked)} dependent workspace(s) not built" if blocked else ""
    where = f"; its log tail is in the task run 'build {first.name}'" if first else ""
    return f"{head}{more}{extra}{where}"


@task(name="publish-build-report", task_run_name="publish-build-report", cache_policy=NO_CACHE)
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
    params = resolve_params(params)
    plan = plan_task(params)
    rep = run_task(plan)
    workspace_tasks(rep)
    doc = publish_task(rep)
    if doc["failed"] or doc["blocked"]:
        if params.raise_on_failure:
            error = JobFailed(failure_message(rep))
            error.report = doc  # the CLI's --prefect prints the same report as without it
            raise error
        # asked not to fail: the run completes, but visibly not green-and-silent
        from prefect.states import Completed

        message = failure_message(rep)
        publish_markdown(
            "selective-build-warning",
            f"# Build completed with failures\n\n{message}\n\nFailed: {', '.join(doc['failed']) or '-'}; "
            f"not built (a dependency failed): {', '.join(doc['blocked']) or '-'}.\n",
            description="raise_on_failure is off: this run completed although builds failed",
        )
        # Prefect unwraps a returned state: the call gives its data (doc)
        return Completed(name=PARTIAL, message=message, data=doc)  # type: ignore[return-value]
    return doc
