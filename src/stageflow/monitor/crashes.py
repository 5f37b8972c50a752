"""Crashed runs that never started: the server-side path for crashes no flow hook can see.

A flow's ``on_crashed`` hook runs in the flow's own process, so a run that crashes before the flow
starts (its pull step fails, its image cannot be pulled, the worker cannot start it) is never
notified by it. The monitor deployment, which runs every minute, asks the Prefect API for Crashed
runs that never ran (``run_count`` 0) and tells the monitor's notifier about each one, once (the ids already
told are kept in ``$STAGEFLOW_HOME/monitor-crashes.json``, the last 1000).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stageflow import settings
from stageflow.stages import Message

#: How far back the first tick looks (later ticks look back as far, and skip what they told).
LOOK_BACK = timedelta(hours=6)
KEEP = 1000


def _ledger() -> Path:
    return settings.home() / "monitor-crashes.json"


def _told() -> list[str]:
    try:
        return list(json.loads(_ledger().read_text()))
    except (OSError, ValueError):
        return []


def _remember(ids: list[str]) -> None:
    path = _ledger()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ids[-KEEP:]))
    os.replace(tmp, path)


def unstarted_crashes(api_url: str, since: datetime) -> list[dict[str, Any]]:
    """Flow runs that crashed after ``since`` without ever running (``run_count`` 0: the flow never
    entered Running, so its own hooks never ran). The state's timestamp is when it crashed."""
    import httpx

    response = httpx.post(
        f"{api_url.rstrip('/')}/flow_runs/filter",
        json={
            "flow_runs": {"state": {"type": {"any_": ["CRASHED"]}}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 200,
        },
        timeout=10,
    )
    response.raise_for_status()
    out = []
    for r in response.json():
        stamp = (r.get("state") or {}).get("timestamp")
        if r.get("run_count") or not stamp:
            continue
        if datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= since:
            out.append(r)
    return out


def notify_unstarted_crashes(notifier: Any, api_url: str | None = None, now: datetime | None = None) -> int:
    """Tell ``notifier`` about each crashed-before-start run not told yet. Returns how many."""
    from stageflow.orchestration import flow_run_url

    api_url = api_url or os.environ.get("PREFECT_API_URL")
    if not api_url:
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    if not api_url:
        return 0
    now = now or datetime.now(UTC)
    told = _told()
    new = [r for r in unstarted_crashes(api_url, now - LOOK_BACK) if r["id"] not in told]
    for run in reversed(new):  # oldest first
        state = run.get("state") or {}
        notifier.notify(
            Message(
                title=f"stageflow: flow run {run['name']!r} crashed before it started",
                text=(state.get("message") or "")[:500],
                level="error",
                link=flow_run_url(run["id"]),
                fields={"run": run["id"], "deployment": str(run.get("deployment_id")), "state": "Crashed"},
            )
        )
        told.append(run["id"])
    if new:
        _remember(told)
    return len(new)
