"""Prefect glue shared by the flows: artifact helpers (table, markdown, progress) and cache-key
helpers. Imported by flows only; core engines never import Prefect.

Every helper is a no-op outside a Prefect run, so the same engine code runs from the CLI without
starting Prefect's API.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The state name of a run that completed although some of its items (builds, videos) failed: the
#: run list shows it apart from a clean Completed; a warning artifact lists the failures.
PARTIAL = "Completed with failures"


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "stageflow"


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str = "") -> None:
    if not in_prefect_run():
        return
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        key=artifact_key(key),
        table=[{k: _cell(v) for k, v in r.items()} for r in rows],
        description=description,
    )


def publish_markdown(key: str, markdown: str, description: str = "") -> None:
    if not in_prefect_run():
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)


class Progress:
    """A Prefect progress artifact updated as work completes (0-100 %)."""

    def __init__(self, description: str, total: int):
        self.total = max(total, 1)
        self.done = 0
        self._id: Any = None  # a UUID: create_progress_artifact is sync_compatible, typed as a coroutine too
        if in_prefect_run():
            from prefect.artifacts import create_progress_artifact

            self._id = create_progress_artifact(progress=0.0, description=description)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._id, progress=min(100.0, 100.0 * self.done / self.total))


def content_key(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable inputs, for cache keys keyed by content."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def flow_run_url(flow_run_id: Any) -> str | None:
    """The Prefect UI page of a flow run, when a UI is configured (None in ephemeral mode)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow-run state hook (on_failure / on_crashed): tell the configured notifier, with a link to the
    run. Never raises: a broken notifier must not mask the flow's own failure."""
    import logging

    try:
        from stageflow.config import load_config
        from stageflow.plugin_manager import get_plugin_manager
        from stageflow.stages import Message

        cfg = load_config()
        message = Message(
            title=f"stageflow: flow run {flow_run.name!r} of {flow.name!r} is {state.name}",
            text=(state.message or "")[:500],
            level="error",
            link=flow_run_url(flow_run.id),
            fields={"flow": flow.name, "run": str(flow_run.id), "state": str(state.name)},
        )
        get_plugin_manager().build("notifiers", cfg.notify.backend, cfg.notify.options).notify(message)
    except Exception as exc:  # pragma: no cover - reported, never raised
        logging.getLogger("stageflow").warning(
            "failure notification not sent: %s: %s", type(exc).__name__, exc
        )


def ensure_api_reachable(timeout_s: float = 2.5) -> None:
    """When PREFECT_API_URL names a server, fail fast with one clear line if it does not answer
    (Prefect's own client would retry for much longer). Ephemeral mode needs no check. A server set
    only in a Prefect profile (not the environment) is not pre-checked."""
    import os

    import httpx

    from stageflow.errors import JobFailed

    url = os.environ.get("PREFECT_API_URL")  # read directly: importing prefect alone costs ~1.5 s
    if not url:
        return
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise JobFailed(
            f"Prefect API at {url} is unreachable ({type(exc).__name__}): start the server "
            "(`prefect server start`) or unset PREFECT_API_URL to use the embedded one"
        ) from None
