"""The monitor flow: every minute (prefect.yaml / `stageflow serve`), probe every configured target
and alert on state changes only. Logic lives in stageflow.monitor.engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from stageflow.config import load_config
from stageflow.monitor import engine
from stageflow.orchestration import notify_failure, publish_table


@task(name="monitor-tick", retries=0)
def monitor_tick_task(config_path: str | None) -> dict[str, Any]:
    cfg = load_config(Path(config_path) if config_path else None)
    return engine.run_tick(cfg)


@flow(name="monitor", on_failure=[notify_failure], on_crashed=[notify_failure])
def monitor(config_path: str | None = None) -> dict[str, Any]:
    """Probe every check in [monitor] of stageflow.toml; notify on alert, recovery and escalation."""
    report = monitor_tick_task(config_path)
    publish_table("monitor-checks", report["checks"], description=f"checked at {report['checked_at']}")
    return report
