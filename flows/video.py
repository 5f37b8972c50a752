"""Video flows. ``video_discovery``: source -> new items only -> sinks -> seen -> notify.

(The full video-analysis flow and its GPU inference child build on this in later issues.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS
from pydantic import BaseModel, Field

from stageflow import settings
from stageflow.config import BackendChoice
from stageflow.orchestration import Progress, notify_failure, publish_markdown, publish_table
from stageflow.plugin_manager import get_plugin_manager
from stageflow.stages import Message
from stageflow.store import open_store
from stageflow.video import discovery


class DiscoveryParams(BaseModel):
    """Parameters of the discovery flow (shown as a form in the Prefect UI)."""

    source: str = "rss"
    options: dict[str, Any] = Field(default_factory=dict)
    sinks: list[BackendChoice] = Field(default_factory=list)
    notifier: str = "log"
    notifier_options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_config(cls, config_path: str | None = None) -> DiscoveryParams:
        from pathlib import Path

        from stageflow.config import load_config

        cfg = load_config(Path(config_path) if config_path else None)
        d = cfg.discover
        return cls(
            source=d.source,
            options=d.options,
            sinks=d.sinks,
            notifier=cfg.notify.backend,
            notifier_options=cfg.notify.options,
        )


@task(name="check-backends")
def check_backends_task(params: DiscoveryParams, sinks: list[BackendChoice]) -> None:
    """Resolve and configure every backend before anything is written (unknown names fail here)."""
    plugins = get_plugin_manager()
    plugins.registry("sources").validate_config(params.source, params.options)
    for choice in sinks:
        plugins.build("sinks", choice.backend, choice.options)
    plugins.build("notifiers", params.notifier, params.notifier_options)


@task(name="discover", task_run_name="discover-{source}", retries=2, retry_delay_seconds=5)
def discover_task(source: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    return discovery.discover(get_plugin_manager(), source, options)


@task(name="select-new")
def select_new_task(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = open_store()
    try:
        return discovery.select_new(store, records)
    finally:
        store.close()


# Sinks upsert by key, so a retry or a re-run with the same content writes nothing twice.
@task(
    name="write-sink",
    task_run_name="write-{choice.backend}",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=INPUTS,
    cache_expiration=timedelta(days=1),
)
def write_sink_task(choice: BackendChoice, records: list[dict[str, Any]]) -> dict[str, int]:
    return discovery.write_sinks(get_plugin_manager(), [choice], records)


@task(name="mark-seen")
def mark_seen_task(records: list[dict[str, Any]]) -> int:
    store = open_store()
    try:
        return discovery.mark_seen(store, records)
    finally:
        store.close()


# Keyed by the message content: a re-run after a crash does not notify twice.
@task(
    name="notify",
    task_run_name="notify-{notifier}",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=INPUTS,
    cache_expiration=timedelta(hours=6),
)
def notify_task(notifier: str, options: dict[str, Any], message: Message) -> None:
    get_plugin_manager().build("notifiers", notifier, options).notify(message)


@flow(name="video-discovery", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def video_discovery(params: DiscoveryParams | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Find new videos from ``params.source``, store them and send one summary notification.

    Without ``params`` (a scheduled deployment), [discover] and [notify] of stageflow.toml apply."""
    if params is None:
        params = DiscoveryParams.from_config(config_path)
    home = settings.home()
    sinks = params.sinks or discovery.default_sinks(home)
    check_backends_task(params, sinks)
    records = discover_task(params.source, params.options)
    new = select_new_task(records)
    progress = Progress(f"writing {len(new)} new items to {len(sinks)} sinks", total=len(sinks))
    written: dict[str, int] = {}
    for choice in sinks:
        written.update(write_sink_task(choice, new))
        progress.advance()
    mark_seen_task(new)
    notify_task(params.notifier, params.notifier_options, discovery.summary_message(len(records), new))
    publish_table(
        "video-discovery-new",
        [{k: r.get(k) for k in ("id", "title", "channel", "published", "url")} for r in new],
        description=f"{len(new)} new of {len(records)} found",
    )
    publish_markdown(
        "video-discovery-summary",
        "| sink | rows |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in written.items()),
    )
    return {"found": len(records), "new": len(new), "written": written, "home": str(home)}
