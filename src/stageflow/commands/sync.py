"""CLI commands of the deploy-sync family: ``stageflow sync``, ``stageflow rollback`` and
``stageflow target init``.

Thin: every command calls :mod:`stageflow.sync.engine` (imported inside the command so start-up stays
fast; Prefect is imported only with ``--prefect``). Never prints secrets; JSON goes to stdout, the rest
to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stageflow.fast.sync_cli import emit_json

target_app = typer.Typer(
    help="Prepare deploy targets (role markers).", no_args_is_help=True, rich_markup_mode=None
)


def _progress_hook(enabled: bool) -> tuple[Any, Any]:
    """(on_changes callback, progress object to stop) for a rich bar on a TTY stderr."""
    if not enabled or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("sync"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    def on_changes(changes: Any) -> None:
        task = bar.add_task("sync", total=max(len(changes.to_send), 1))
        bar.start()
        changes.progress = lambda path, sent: bar.advance(task)

    return on_changes, bar


def sync_cmd(
    source: Annotated[Path, typer.Argument(help="Project root to ship (its working tree).")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment in [sync.environments].")],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Override the target: /path or user@host:/path.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", dir_okay=False, help="Project file (default: SOURCE/stageflow.toml)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the change set and hooks; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    prefect: Annotated[bool, typer.Option("--prefect", help="Run as the deploy_sync Prefect flow.")] = False,
    no_git: Annotated[
        bool, typer.Option("--no-git", help="Walk the whole tree instead of asking git what changed.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also compare the target's real files with the manifest (type, size, mtime, mode) and "
            "repair drift: re-ship edited or deleted files, remove files added by hand (never excluded "
            "or protected paths). With --dry-run: report only.",
        ),
    ] = False,
    checksum: Annotated[
        bool,
        typer.Option("--checksum", help="With --verify: compare file contents (SHA-256) too."),
    ] = False,
) -> None:
    """Ship what changed in SOURCE to the environment's target, behind the role safety net.

    Leaves a warm sync server for the next sync (STAGEFLOW_SYNC_SERVER: idle time, default 10m; 0: off).
    There is none when CI is set and STAGEFLOW_SYNC_SERVER is not.
    `stageflow target close` stops it and the ssh connections kept between syncs.
    watchman = true in the environment asks watchman what changed instead of git status.
    Releases mode: a release an interrupted sync left with unfinished hooks is finished first (its
    hooks run again; rolled back if they fail) or rolled back (unfinished_hooks = "rollback")."""
    if checksum and not verify:
        from stageflow.errors import BadInput

        raise BadInput("--checksum only applies to --verify: pass both (stageflow sync --verify --checksum)")
    if prefect:
        from stageflow.flows.deploy_sync import DeploySyncParams, deploy_sync

        doc = deploy_sync(
            DeploySyncParams(
                source=str(source),
                environment=env,
                target=target,
                config=str(config) if config else None,
                dry_run=dry_run,
                use_git=not no_git,
                verify=verify,
                checksum=checksum,
            )
        )
        if as_json:
            emit_json(doc)
        else:
            typer.echo(f"deploy_sync flow: {json.dumps(doc['changes'])} release {doc['release']}")
        return
    from stageflow.fast.sync_cli import execute, load_request

    flags = {"dry_run": dry_run, "use_git": not no_git, "verify": verify, "checksum": checksum}
    request = load_request(source, env, config, target=target, **flags)
    on_changes, bar = _progress_hook(not as_json)
    execute(request, as_json=as_json, on_changes=on_changes, bar=bar)


def rollback_cmd(
    dest: Annotated[str, typer.Argument(help="Target: /path or user@host:/path (releases mode).")],
    to: Annotated[
        str | None, typer.Option("--to", help="Release id (default: the one before current).")
    ] = None,
    ssh_command: Annotated[
        str, typer.Option("--ssh-command", help="ssh command for remote targets.")
    ] = "ssh",
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help="Seconds to wait for a running sync.")
    ] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Point DEST's `current` symlink back at an earlier release (instant)."""
    from stageflow.sync import releases
    from stageflow.sync.target import open_target

    target = open_target(dest, ssh_command)
    try:
        if not target.remote and not target.exists():
            from stageflow.errors import BadInput

            raise BadInput(f'target {dest} does not exist: pass a directory deployed with mode = "releases"')
        with target.lock(lock_timeout):
            before, after = releases.rollback(target, to)
    finally:
        target.close()
    if as_json:
        emit_json({"target": dest, "from": before, "to": after})
    else:
        typer.echo(f"rolled back {dest}: current {before} -> {after}")


@target_app.command("init")
def target_init_cmd(
    dest: Annotated[str, typer.Argument(help="Target: /path or user@host:/path.")],
    role: Annotated[str, typer.Option("--role", "-r", help="The role this target serves (e.g. apiserver).")],
    force: Annotated[bool, typer.Option("--force", help="Replace a different existing role.")] = False,
    ssh_command: Annotated[
        str, typer.Option("--ssh-command", help="ssh command for remote targets.")
    ] = "ssh",
) -> None:
    """Write DEST/.stageflow/role so syncs of other roles are refused (and probe whether DEST's file
    system ignores case: then protect patterns match case-insensitively there)."""
    from stageflow.sync.engine import init_target

    path = init_target(dest, role, ssh_command=ssh_command, force=force)
    typer.echo(f"{path}: role {role}")


@target_app.command("close")
def target_close_cmd(
    ssh_command: Annotated[
        str, typer.Option("--ssh-command", help="ssh command used to stop the masters.")
    ] = "ssh",
) -> None:
    """Stop what syncs keep between runs: the ssh master connections (ssh_persist) and the warm sync
    server (STAGEFLOW_SYNC_SERVER)."""
    from stageflow.fast.sync_server import stop_servers
    from stageflow.sync.target import close_masters

    typer.echo(f"closed {close_masters(ssh_command)} ssh master connection(s)")
    typer.echo(f"stopped {stop_servers()} sync server(s)")


def register(app: typer.Typer) -> None:
    """Add this family's commands to the root app."""
    app.command("sync")(sync_cmd)
    app.command("rollback")(rollback_cmd)
    app.add_typer(target_app, name="target")
