"""``stageflow sync`` without Typer: the common invocations (SOURCE, --env, --target, --config,
--dry-run, --json, --no-git) run the engine directly and print exactly what the Typer command prints,
saving Typer's import (~60 ms of a ~300 ms command). Anything else (--prefect, --help, --debug, an
unknown flag, a progress bar on a terminal) returns False and the Typer app runs as before.

Shared with :mod:`stageflow.commands.sync`, which prints through the same functions.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_VALUE_FLAGS = {
    "--env": "env",
    "-e": "env",
    "--target": "target",
    "-t": "target",
    "--config": "config",
    "-c": "config",
}
_BOOL_FLAGS = {"--dry-run": "dry_run", "--json": "as_json", "--no-git": "no_git"}


def echo(message: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def emit_json(doc: Any) -> None:
    from stageflow.sync.manifest import json_text

    sys.stdout.write(json_text(doc, indent=2, default=str) + "\n")


def warn(message: str) -> None:
    echo(f"stageflow: warning: {message}", err=True)


def print_result(result: Any) -> None:
    changes = result.changes
    if result.dry_run:
        for label, paths in (("+", changes.added), ("~", changes.modified), ("-", changes.deleted)):
            for p in paths:
                echo(f"{label} {p}")
        for h in result.hooks:
            echo(f"hook {h.name}: planned")
        echo(
            f"dry run: {len(changes.added)} to add, {len(changes.modified)} to modify, "
            f"{len(changes.deleted)} to delete on {result.target} ({result.mode}); nothing written"
        )
        return
    for h in result.hooks:
        echo(f"hook {h.name}: {h.status}" + (f" ({h.detail})" if h.detail else ""))
    drift = getattr(result, "drift", None)
    if drift is not None and not (drift["edited"] or drift["missing"] or drift["extra"]):
        echo(f"verified {result.target}: {drift['checked']} paths match the manifest")
    where = f" release {result.release}" if result.release else ""
    echo(
        f"synced {result.environment} to {result.target}{where}: {len(changes.added)} added, "
        f"{len(changes.modified)} modified, {len(changes.deleted)} deleted, {result.bytes_sent} bytes "
        f"in {result.duration_s:.2f} s"
    )


def parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """The arguments after ``sync``; None for anything this path does not handle."""
    out: dict[str, Any] = {"source": None, "env": None, "target": None, "config": None}
    out.update(dict.fromkeys(_BOOL_FLAGS.values(), False))
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, inline = arg.partition("=")
        if arg in _BOOL_FLAGS:
            out[_BOOL_FLAGS[arg]] = True
        elif key in _VALUE_FLAGS and (eq or arg in _VALUE_FLAGS):
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                inline = argv[i]
            if out[_VALUE_FLAGS[key]] is not None or not inline:
                return None
            out[_VALUE_FLAGS[key]] = inline
        elif arg.startswith("-") or out["source"] is not None:
            return None
        else:
            out["source"] = arg
        i += 1
    if out["source"] is None or out["env"] is None:
        return None
    return out


def run(argv: Sequence[str]) -> bool:
    """Run ``stageflow sync ARGV`` when this path handles it (exits like the Typer command)."""
    args = parse(argv)
    if args is None or (not args["as_json"] and sys.stderr.isatty()):
        return False  # Typer's path: its parser's messages, --prefect, the progress bar
    from pathlib import Path

    if args["config"] and Path(args["config"]).is_dir():
        return False  # Typer's own message for a directory given as --config

    from stageflow.errors import run_command

    def sync() -> None:
        request = load_request(
            Path(args["source"]),
            args["env"],
            Path(args["config"]) if args["config"] else None,
            target=args["target"],
            dry_run=args["dry_run"],
            use_git=not args["no_git"],
        )
        execute(request, as_json=args["as_json"])

    run_command(sync)
    return True


def load_request(source: Any, environment: str, config: Any = None, **options: Any) -> Any:
    """The engine's :class:`~stageflow.sync.engine.SyncRequest` for SOURCE: the project file
    (``config``, else SOURCE/stageflow.toml) loaded here, its [sync] section handed to the engine,
    which reads no file itself. ``options``: the request's other fields (target, dry_run, ...)."""
    from stageflow.config import load_config
    from stageflow.sync.engine import SyncRequest, locate

    source, path = locate(source, config)
    return SyncRequest(source, environment, load_config(path).sync, path, **options)


def execute(request: Any, *, as_json: bool, on_changes: Any = None, bar: Any = None) -> None:
    """Run the sync engine and print its result (or, when it fails, its warnings and JSON document
    before the error propagates): the one output path of both ``stageflow sync`` entry points."""
    from stageflow.sync.engine import DeployFailed, sync

    try:
        result = sync(
            request, log=lambda m: echo(m, err=True) if not as_json else None, on_changes=on_changes
        )
    except DeployFailed as exc:
        if bar is not None:
            bar.stop()
        for w in exc.result.warnings:
            warn(w)
        if as_json:
            emit_json(exc.result.as_json())
        raise
    finally:
        if bar is not None:
            bar.stop()
    for w in result.warnings:
        warn(w)
    if as_json:
        emit_json(result.as_json())
    else:
        print_result(result)
