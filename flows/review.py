"""The ``review-sync`` flow: read the status column of the review sheet (the ``gsheets`` sink of
``[video] sinks``) and move candidates through the store's status machine, publishing a table of
the changes. Run it on a schedule (a deployment) or by hand after reviewers edit the sheet.

Wiring only: the logic is the sink's ``review_sync`` (plugins/gsheets.py) and
stageflow.video.analysis.review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from stageflow.orchestration import notify_failure, publish_table
from stageflow.plugin_manager import get_plugin_manager
from stageflow.store import open_store


@task(name="review-sync", task_run_name="review-sync", retries=2, retry_delay_seconds=10)
def review_sync_task(options: dict[str, Any]) -> dict[str, Any]:
    """Built here: the store's connection belongs to this task's thread. Applying a status that is
    already applied changes nothing, so a retry is safe."""
    from stageflow.video.analysis.review import sync_from_sheet

    store = open_store()
    try:
        return sync_from_sheet(get_plugin_manager(), options, store)
    finally:
        store.close()


@flow(name="review-sync", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def review_sync(sheet: dict[str, Any] | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Apply the review sheet's statuses to the store. ``sheet``: the gsheets sink options (default:
    the gsheets entry of ``[video] sinks`` in stageflow.toml / ``config_path``)."""
    if sheet is None:
        from stageflow.config import load_config
        from stageflow.video.analysis.review import sheet_sink_options

        sheet = sheet_sink_options(load_config(Path(config_path) if config_path else None).video)
    report = review_sync_task(sheet)
    changed, errors = len(report["changed"]), len(report["errors"])
    publish_table(
        "review-sync",
        [{"id": c["id"], "from": c["from"], "to": c["to"], "error": ""} for c in report["changed"]]
        + [{"id": "", "from": "", "to": "", "error": e} for e in report["errors"]],
        description=f"{changed} changed, {errors} not applied, at {report['at']}",
    )
    for err in report["errors"]:
        print(f"review-sync: {err}")
    return report
