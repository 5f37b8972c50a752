"""``stageflow demo``: the embedded-default main job. Runs the real discovery flow through Prefect's
ephemeral API (SQLite under PREFECT_HOME) on the bundled sample feed, writing to the SQLite store and
JSON lines under $STAGEFLOW_HOME, and reports where everything is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def run_demo(config_path: Path | None = None) -> dict[str, Any]:
    from stageflow.samples import SAMPLES_DIR

    from stageflow import settings
    from stageflow.config import load_config

    cfg = load_config(config_path)
    home = settings.home()  # fails early, with one line, if STAGEFLOW_HOME is not writable
    # Route the stageflow loggers (the `log` notifier among them) into Prefect's run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "stageflow")
    # The embedded server's telemetry write races the first flow run on SQLite ("database is locked").
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from prefect.settings import PREFECT_HOME
    from stageflow.flows.video import DiscoveryParams, video_discovery

    from stageflow.config import BackendChoice

    jsonl_dir = home / "demo" / "results"
    params = DiscoveryParams(
        source="rss",
        options={"feeds": [str(SAMPLES_DIR / "youtube_channel_feed.xml")], "max_age_days": None},
        sinks=[
            BackendChoice(backend="sqlite"),
            BackendChoice(backend="jsonl", options={"directory": str(jsonl_dir)}),
        ],
        notifier=cfg.notify.backend,
        notifier_options=cfg.notify.options,
    )
    result = video_discovery(params)
    return {
        **result,
        "store": str(settings.store_path()),
        "jsonl": str(jsonl_dir / "videos.jsonl"),
        "prefect_home": str(PREFECT_HOME.value()),
    }
