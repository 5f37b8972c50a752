"""The ``deploy-sync`` Prefect flow: safety net -> transfer + hooks -> change table -> notification.

Thin wiring over :mod:`stageflow.sync.engine` (each task is one engine call); no deploy logic here.
Notifications never carry secrets: only the environment, target, counts and the error line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from stageflow.errors import StageflowError
from stageflow.orchestration import notify_failure, publish_table
from stageflow.plugin_manager import get_plugin_manager
from stageflow.runconfig import resolve_params
from stageflow.stages import Message
from stageflow.sync import engine


class DeploySyncParams(BaseModel):
    """Parameters of the deploy_sync flow (a form in the Prefect UI). What is not given comes from the
    project file (``config``, else STAGEFLOW_CONFIG, else SOURCE/stageflow.toml): the notifier from
    [notify], the environment's profile from [sync.environments]."""

    source: str = Field(description="Project root whose working tree ships")
    environment: str = Field(description="Environment name in [sync.environments]")
    target: str | None = Field(default=None, description="Override the profile's target")
    config: str | None = Field(
        default=None, description="Project file (default: STAGEFLOW_CONFIG, else SOURCE/stageflow.toml)"
    )
    dry_run: bool = False
    use_git: bool = Field(default=True, description="Ask git what changed (False: walk the whole tree)")
    verify: bool = Field(
        default=False, description="Compare the target's files with the manifest and repair drift"
    )
    checksum: bool = Field(default=False, description="With verify: compare file contents too")
    notifier: str = Field(default="log", description="Notifier backend (default: [notify] backend)")
    notifier_options: dict[str, Any] = Field(
        default_factory=dict, description="Notifier options (default: [notify] options)"
    )


@task(name="safety-net", task_run_name="safety-net", cache_policy=NO_CACHE)
def prepare_task(params: DeploySyncParams) -> engine.Prepared:
    request = engine.SyncRequest(
        source=Path(params.source),  # the engine takes Path(source) either way
        environment=params.environment,
        target=params.target,
        config_path=Path(params.config) if params.config else None,
        dry_run=params.dry_run,
        use_git=params.use_git,
        verify=params.verify,
        checksum=params.checksum,
    )
    return engine.prepare(request, log=get_run_logger().info)


@task(name="transfer-and-hooks", task_run_name="transfer-and-hooks", cache_policy=NO_CACHE)
def execute_task(prepared: engine.Prepared) -> engine.SyncResult:
    return engine.execute(prepared)


@task(name="notify", task_run_name="notify", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def notify_task(notifier: str, options: dict[str, Any], message: Message) -> None:
    get_plugin_manager().build("notifiers", notifier, options).notify(message)


def _change_rows(result: engine.SyncResult) -> list[dict[str, Any]]:
    rows = [{"change": kind, "path": p} for kind, paths in result.changes.as_dict().items() for p in paths]
    return rows or [{"change": "none", "path": ""}]


def _publish(result: engine.SyncResult) -> None:
    publish_table(
        f"deploy-sync-{result.environment}",
        _change_rows(result),
        description=f"{result.environment} -> {result.target}: {result.bytes_sent} bytes, "
        f"{result.duration_s:.2f} s, release {result.release or '-'}",
    )


@flow(name="deploy-sync", log_prints=True, on_crashed=[notify_failure])  # failures notify in the flow
def deploy_sync(params: DeploySyncParams) -> dict[str, Any]:
    """Ship what changed in ``params.source`` to the environment's target; notify on every outcome."""
    params = resolve_params(params)
    title = f"deploy-sync {params.environment}"
    try:
        result = execute_task(prepare_task(params))
    except engine.DeployFailed as exc:
        _publish(exc.result)
        level_text = "rolled back" if exc.result.rolled_back_to else "failed"
        notify_task(
            params.notifier,
            params.notifier_options,
            Message(
                f"{title} {level_text}",
                str(exc),
                level="error",
                fields={"target": exc.result.target, "rolled_back_to": str(exc.result.rolled_back_to)},
            ),
        )
        raise
    except StageflowError as exc:
        notify_task(
            params.notifier, params.notifier_options, Message(f"{title} failed", str(exc), level="error")
        )
        raise
    _publish(result)
    changes = result.changes
    notify_task(
        params.notifier,
        params.notifier_options,
        Message(
            f"{title} {'planned' if result.dry_run else 'done'}",
            f"{len(changes.added)} added, {len(changes.modified)} modified, {len(changes.deleted)} deleted",
            fields={"target": result.target, "release": str(result.release), "bytes": str(result.bytes_sent)},
        ),
    )
    return result.as_json()
