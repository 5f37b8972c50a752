"""``stageflow demo``: the embedded-default main job. Runs the real flows through Prefect's ephemeral
API (SQLite under PREFECT_HOME) on bundled samples — video discovery on the sample feed, a selective
build of the sample monorepo, and a deploy-sync of its API server to a local target — writing only
under $STAGEFLOW_HOME/demo and the store, and reports where everything is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def _prepare_env() -> None:
    # Route the stageflow loggers (the `log` notifier among them) into Prefect's run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "stageflow")
    # The embedded server's telemetry write races the first flow run on SQLite ("database is locked").
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The embedded server needs ~10 s to start on a 2-core machine, more under load (default is 20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _video_demo(demo: Path, cfg: Any) -> dict[str, Any] | None:
    """A short generated clip through the video-analysis flow: decode, on-screen text (rapidocr's
    shipped models), rules analyzer, candidate with a reel clip. Skipped (None) without the video
    extra; speech and object detection are off because no model files ship with stageflow."""
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("av", "rapidocr_onnxruntime", "PIL")):
        return None
    from stageflow.flows.video import AnalysisParams, video_analysis

    from stageflow.video import synthetic

    clip = demo / "video" / "sample.mp4"
    if not clip.exists():
        clip.parent.mkdir(parents=True, exist_ok=True)
        synthetic.make_video(
            clip,
            [synthetic.Scene(2.0, "HELLO"), synthetic.Scene(2.0, "LOGITECH MX MASTER", (255, 255, 200))],
            size=(640, 360),
        )
    doc = video_analysis(
        AnalysisParams(
            inputs=[str(clip)],
            out=str(demo / "video" / "out"),
            video={"transcriber": "", "detector": "", "ocr": ["rapidocr"], "analyzer": "rules"},
            notifier=cfg.notify.backend,
            notifier_options=cfg.notify.options,
        )
    )
    [record] = doc["videos"]
    return {
        "input": str(clip),
        "error": record["error"],
        "ocr": [o["text"] for o in record["ocr"]],
        "candidates": [
            {k: c.get(k) for k in ("product_name", "brand", "status", "clip")} for c in record["candidates"]
        ],
    }


def run_demo(config_path: Path | None = None) -> dict[str, Any]:
    from stageflow.samples import SAMPLES_DIR

    from stageflow import settings
    from stageflow.config import load_config

    cfg = load_config(config_path)
    home = settings.home()  # fails early, with one line, if STAGEFLOW_HOME is not writable
    demo = home / "demo"
    _prepare_env()

    from prefect.settings import PREFECT_HOME
    from stageflow.flows.deploy_sync import DeploySyncParams, deploy_sync
    from stageflow.flows.selective_build import SelectiveBuildParams, selective_build
    from stageflow.flows.video import DiscoveryParams, video_discovery

    from stageflow.config import BackendChoice
    from stageflow.sync.engine import init_target

    jsonl_dir = demo / "results"
    discovery = video_discovery(
        DiscoveryParams(
            source="rss",
            options={"feeds": [str(SAMPLES_DIR / "youtube_channel_feed.xml")], "max_age_days": None},
            sinks=[
                BackendChoice(backend="sqlite"),
                BackendChoice(backend="jsonl", options={"directory": str(jsonl_dir)}),
            ],
            notifier=cfg.notify.backend,
            notifier_options=cfg.notify.options,
        )
    )

    repo = demo / "monorepo"
    shutil.copytree(
        SAMPLES_DIR / "monorepo",
        repo,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"),
    )
    build = selective_build(SelectiveBuildParams(repo=str(repo)))

    target = demo / "servers" / "api"
    if not (target / ".stageflow" / "role").exists():
        init_target(str(target), "apiserver")
    sync = deploy_sync(
        DeploySyncParams(
            source=str(repo),
            environment="apiserver",
            target=str(target),
            config=str(SAMPLES_DIR / "demo-sync.toml"),
            notifier=cfg.notify.backend,
            notifier_options=cfg.notify.options,
        )
    )
    video = _video_demo(demo, cfg)
    return {
        "video": video,
        "discovery": {
            **discovery,
            "store": str(settings.store_path()),
            "jsonl": str(jsonl_dir / "videos.jsonl"),
        },
        "build": {k: build[k] for k in ("built", "cached", "skipped", "failed", "duration_s")}
        | {"repo": str(repo)},
        "sync": {
            "target": str(target),
            "release": sync.get("release"),
            "changes": sync.get("changes"),
            "current": str(target / "current"),
        },
        "prefect_home": str(PREFECT_HOME.value()),
    }
