"""CLI commands for operations: ``stageflow monitor``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

pools_app = typer.Typer(
    help="Work pools: cpu (process) and gpu (Docker with GPU device requests).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
blocks_app = typer.Typer(
    help="Prefect Block types for credentials and deploy targets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_cmd)
    app.command("validate")(validate_cmd)
    app.command("serve")(serve_cmd)
    app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        worker_cmd
    )
    app.add_typer(blocks_app, name="blocks")
    app.add_typer(pools_app, name="pools")


@pools_app.command("create")
def pools_create_cmd(
    gpu_image: Annotated[
        str, typer.Option("--gpu-image", help="Image for GPU jobs.")
    ] = "stageflow-gpu:latest",
    gpu_slots: Annotated[int, typer.Option("--gpu-slots", min=1, help="Concurrent gpu-tagged tasks.")] = 1,
    pull_policy: Annotated[
        str,
        typer.Option(
            "--gpu-pull-policy",
            help="When the gpu worker pulls the image: IfNotPresent (a locally built image is used "
            "as it is), Always, IfPossible or Never.",
        ),
    ] = "IfNotPresent",
) -> None:
    """Create or update the cpu and gpu work pools and the concurrency limit for the gpu tag."""
    from stageflow.deployments.pools import create_pools

    for line in create_pools(gpu_image, gpu_slots, pull_policy):
        typer.echo(line)


@pools_app.command("show")
def pools_show_cmd(name: Annotated[str, typer.Argument(help="Work pool name.")]) -> None:
    """Print a work pool's type and base job template as JSON."""
    from stageflow.deployments.pools import show_pool

    sys.stdout.write(json.dumps(show_pool(name), indent=2) + "\n")


def serve_cmd(
    prefect_yaml: Annotated[Path, typer.Option("--prefect-yaml", help="Deployments to serve.")] = Path(
        "prefect.yaml"
    ),
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve just this deployment (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Most flow runs at once.")] = None,
) -> None:
    """Serve every deployment of prefect.yaml with its schedules in this one process (24/7 mode)."""
    from stageflow.deployments.serve import serve_all

    serve_all(prefect_yaml, only, limit)


def worker_cmd(ctx: typer.Context) -> None:
    """`prefect worker start ARGS...` whose SIGTERM/SIGINT crashes its running flow runs, kills their
    processes and notifies (Prefect's own worker leaves them Running). E.g. stageflow worker --pool cpu"""
    from stageflow.deployments.worker import run_worker

    raise typer.Exit(run_worker(list(ctx.args)))


def validate_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Project file (default ./stageflow.toml).")
    ] = None,
    prefect_yaml: Annotated[
        Path | None,
        typer.Option("--prefect-yaml", help="Deployments file (default ./prefect.yaml if present)."),
    ] = None,
    check_blocks: Annotated[
        bool, typer.Option("--check-blocks", help="Ask the Prefect API that referenced blocks exist.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Check stageflow.toml, backend names and options, prefect.yaml and referenced blocks (exit 2 if not)."""
    from stageflow.validate import validate_project

    if prefect_yaml is None and Path("prefect.yaml").is_file():
        prefect_yaml = Path("prefect.yaml")
    report = validate_project(config, prefect_yaml, check_blocks)
    if as_json:
        sys.stdout.write(
            json.dumps({"ok": report.ok, "checked": report.checked, "problems": report.problems}) + "\n"
        )
    else:
        for line in report.checked:
            typer.echo(f"ok   {line}")
        for line in report.problems:
            typer.echo(f"FAIL {line}", err=True)
    if not report.ok:
        raise typer.Exit(2)


@blocks_app.command("register")
def blocks_register_cmd() -> None:
    """Register stageflow's block types with the Prefect API (the server, or the embedded one)."""
    from stageflow.blocks import BLOCK_TYPES

    for block_type in BLOCK_TYPES:
        block_type.register_type_and_schema()
        typer.echo(f"registered {block_type.get_block_type_slug()}")


@blocks_app.command("list")
def blocks_list_cmd() -> None:
    """List stageflow's block types and their fields (secret fields marked)."""
    from stageflow.blocks import BLOCK_TYPES

    for block_type in BLOCK_TYPES:
        secrets = set(block_type.model_json_schema().get("secret_fields", []))
        fields = ", ".join(
            n + (" (secret)" if any(s == n or s.startswith(n + ".") for s in secrets) else "")
            for n in block_type.model_fields
        )
        typer.echo(f"{block_type.get_block_type_slug()}: {fields}")


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
    """Probe the checks in [monitor] of stageflow.toml; alert on state changes only."""
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
    from stageflow.monitor.engine import run_tick

    return run_tick(cfg)
