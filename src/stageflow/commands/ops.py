"""CLI commands for operations: ``stageflow monitor``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_cmd)


def monitor_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Project file (default ./stageflow.toml).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Probe once and exit (1 if any check fails).")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=5, help="Seconds between ticks when looping.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print each tick as one JSON document.")] = False,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run the tick as the Prefect `monitor` flow.")
    ] = False,
) -> None:
    """Probe the checks in \\[monitor] of stageflow.toml; alert on state changes only."""
    from stageflow.config import load_config

    cfg = load_config(config)
    if not cfg.monitor.checks:
        from stageflow.errors import ConfigError

        raise ConfigError("no monitor checks configured: add [[monitor.checks]] tables to stageflow.toml")
    while True:
        started = time.monotonic()
        report = _tick(config, cfg, prefect)
        if as_json:
            sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            for c in report["checks"]:
                typer.echo(f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']:<20} {c['detail']}")
            for t in report["transitions"]:
                typer.echo(f"-> {t['kind']}: {t['check']}", err=True)
        if once:
            raise typer.Exit(0 if all(c["ok"] for c in report["checks"]) else 1)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def _tick(config: Path | None, cfg, prefect: bool) -> dict:
    if prefect:
        from stageflow.flows.monitor import monitor

        return monitor(str(config) if config else None)
    from stageflow.monitor.engine import monitor_once
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.store import open_store

    plugins = get_plugin_manager()
    m = cfg.monitor
    notifier = plugins.build(
        "notifiers",
        m.notifier or cfg.notify.backend,
        m.notifier_options if m.notifier else cfg.notify.options,
    )
    store = open_store()
    try:
        return monitor_once(plugins, m, store, notifier)
    finally:
        store.close()
