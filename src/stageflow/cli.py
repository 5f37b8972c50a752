"""The ``stageflow`` command line (Typer). The top floor: it may import flows, but only inside the
command that needs them, so ``stageflow --help`` and quick commands never pay Prefect's import or
its embedded server (see docs/architecture.md).

Errors: a StageflowError prints one line on stderr and exits with its code (2 bad input, 3 refused,
1 failed); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stageflow import __version__
from stageflow.errors import run_command

app = typer.Typer(
    name="stageflow",
    help="Prefect flows made of plugin-swappable stages: deploy-sync, selective build, video analysis.\n\n"
    "Quick start: `stageflow demo` runs all four flow families (discovery, video analysis, deploy-sync, "
    "selective build) on bundled samples in Prefect's embedded mode.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    add_completion=True,
    # help text is plain text: "[sync.environments]" or "KEY=VALUE" are not Rich markup
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(
    help="The stageflow store (SQLite in $STAGEFLOW_HOME): migrate, back up, restore.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Project file (default: ./stageflow.toml if present).", dir_okay=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stageflow {__version__}")
        raise typer.Exit()


#: Commands that always talk to the Prefect API; other commands do with --prefect (or --check-blocks).
_PREFECT_COMMANDS = {"demo", "serve", "pools", "blocks"}


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """stageflow command line."""
    argv = sys.argv[1:]  # click has consumed the subcommand's arguments by now
    if ctx.invoked_subcommand is None or "--help" in argv or "-h" in argv:
        return
    if ctx.invoked_subcommand in _PREFECT_COMMANDS or "--prefect" in argv or "--check-blocks" in argv:
        import os

        if os.environ.get("PREFECT_API_URL"):  # a configured server: fail fast if it is down
            from stageflow.orchestration import ensure_api_reachable

            ensure_api_reachable()
    if "--prefect" in argv:  # the flow runs in this process: a kill -9 is caught at the next start
        from stageflow.deployments.orphans import process_tags, reap_orphans

        for line in reap_orphans():
            typer.echo(f"stageflow: {line}", err=True)
        ctx.with_resource(process_tags())


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------- plugins
@app.command("plugins")
def plugins_cmd(as_json: JsonOpt = False) -> None:
    """List every stage kind's backends: name, distribution, version, and missing optional deps."""
    from stageflow import PLUGIN_API_VERSION
    from stageflow.plugin_manager import get_plugin_manager

    manager = get_plugin_manager()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for kind, registry in manager.registries.items():
        kinds[kind] = [
            {
                "name": s.name,
                "distribution": s.distribution,
                "version": s.version,
                "available": not (missing := s.missing()),
                "missing": missing,
                "extra": s.extra,
                "description": s.description,
            }
            for s in registry.specs()
        ]
    doc = {
        "plugin_api": PLUGIN_API_VERSION,
        "plugins": [p.__dict__ for p in manager.loaded],
        "kinds": kinds,
        "errors": [p.__dict__ for p in manager.problems],
    }
    if as_json:
        _emit_json(doc)
        return
    for kind, rows in kinds.items():
        typer.echo(f"{kind}:")
        if not rows:
            typer.echo("  (none installed)")
        for r in rows:
            state = (
                "ok"
                if r["available"]
                else (f"missing extra '{r['extra']}'" if r["extra"] else f"missing {', '.join(r['missing'])}")
            )
            typer.echo(f"  {r['name']:<16} {r['distribution']} {r['version']:<10} {state}")
    for p in manager.problems:
        typer.echo(f"skipped plugin: {p.error}", err=True)


# ----------------------------------------------------------------------------------------- db
@db_app.command("migrate")
def db_migrate() -> None:
    """Create the store or bring its schema up to date."""
    from stageflow.store import open_store

    store = open_store(migrate=False)
    applied = store.migrate()
    typer.echo(
        f"{store.path}: schema version {store.version()}"
        + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
    )
    store.close()


@db_app.command("backup")
def db_backup(
    dest: Annotated[Path, typer.Argument(help="Backup file, or a directory to put one in.")],
) -> None:
    """Online backup through SQLite's backup API, with a .sha256 file beside it."""
    from stageflow.store import open_store

    store = open_store()
    checksum = store.backup(dest)
    store.close()
    typer.echo(f"backup written: {checksum.with_suffix('')} (checksum {checksum.name})")


@db_app.command("restore")
def db_restore(
    source: Annotated[Path, typer.Argument(help="A .db file written by `stageflow db backup`.")],
) -> None:
    """Restore a backup after verifying its sha256 file; a mismatch is refused (exit 3)."""
    from stageflow.store import open_store

    store = open_store()
    store.restore(source)
    typer.echo(f"restored {source} into {store.path} (schema version {store.version()})")
    store.close()


# ----------------------------------------------------------------------------------------- discover
def _discover_params(config: Path | None, source_override: str | None) -> Any:
    from stageflow import settings
    from stageflow.config import load_config
    from stageflow.video import discovery

    cfg = load_config(config)
    d = cfg.discover
    options = dict(d.options)
    if source_override:
        options = {"feeds": [source_override]} if d.source == "rss" else {"path": source_override}
    return discovery.DiscoveryParams(
        source=d.source,
        options=options,
        sinks=discovery.resolve_sinks(d, settings.home()),
        notifier=cfg.notify.backend,
        notifier_options=cfg.notify.options,
        notify_when_empty=d.notify_when_empty,
    )


@app.command("discover")
def discover_cmd(
    source: Annotated[
        str | None, typer.Argument(help="Feed URL/path (rss) or folder, overriding config.")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run as a Prefect flow (recorded in the UI).")
    ] = False,
) -> None:
    """Find new videos from the configured source, store them, notify (stageflow.toml [discover])."""
    params = _discover_params(config, source)
    if prefect:
        from stageflow.flows.video import video_discovery

        result = video_discovery(params)
    else:
        from stageflow.video import discovery

        result = discovery.run_discovery(params).result()
    if as_json:
        _emit_json(result)
    else:
        typer.echo(f"found {result['found']}, new {result['new']}, written {result['written']}")


# ----------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run the main job on bundled samples through Prefect's embedded server: discovery, build, deploy."""
    from stageflow.deployments.demo import run_demo

    result = run_demo(config)
    if as_json:
        _emit_json(result)
        return
    d, b, s = result["discovery"], result["build"], result["sync"]
    changes = s["changes"] or {}
    typer.echo(f"video-discovery  (bundled feed): found {d['found']}, new {d['new']}")
    typer.echo(f"  results: SQLite store {d['store']}; JSON lines {d['jsonl']}")
    typer.echo(
        f"selective-build  (sample monorepo {b['repo']}): built {len(b['built'])}, "
        f"cached {len(b['cached'])} in {b['duration_s']:.2f} s"
    )
    typer.echo(
        f"deploy-sync      (apiserver -> {s['target']}): release {s['release'] or '(no change)'}, "
        + ", ".join(f"{k} {len(v)}" for k, v in changes.items())
    )
    typer.echo(f"  live release: {s['current']}")
    v = result["video"]
    if v is None:
        typer.echo("video-analysis   skipped: install the video extra (README) to analyse the sample clip")
    else:
        names = ", ".join(f"{c['product_name']} ({c['status']})" for c in v["candidates"]) or "none"
        typer.echo(f"video-analysis   (generated clip {v['input']}): on-screen text {v['ocr']}")
        typer.echo(f"  candidates: {names}")
        for cand in v["candidates"]:
            typer.echo(f"  reel clip: {cand['clip']}")
    typer.echo(
        f"Prefect runs: {result['prefect_home']} (see them with `prefect server start`, "
        "then http://127.0.0.1:4200/runs)"
    )


# ----------------------------------------------------------------------------------------- families
def _register_families() -> None:
    from stageflow.commands import build, ops, sync, video

    sync.register(app)
    build.register(app)
    video.register(app)
    ops.register(app)


_register_families()


def _register_plugin_commands() -> None:
    """Every plugin's ``register_commands`` hook, once (the built-in build runners' --stop-workers)."""
    from stageflow.commands import load_plugin_commands

    load_plugin_commands(app)


_register_plugin_commands()


# ----------------------------------------------------------------------------------------- entry
def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:  # no-change fast path: stdlib only, falls through when unsure
        from stageflow.fast import build as fastpath

        if fastpath.run(args[1:]):
            return
    run_app(args)


#: Optional modules -> the extra that installs them (named when a command needs one that is missing).
EXTRAS = {
    "prefect_docker": "docker",
    "docker": "docker",
    "faster_whisper": "video",
    "ultralytics": "video",
    "rapidocr_onnxruntime": "video",
    "av": "video",
    "torch": "video",
    "gspread": "sheets",
    "slack_sdk": "slack",
}


def _click_exceptions() -> tuple[tuple[type[Any], ...], ...]:
    """Click's UsageError, Abort and ClickException: Typer 0.29 raises those of its own vendored copy
    of Click (typer._click), older Typers those of click itself; both are caught. (``type[Any]``:
    classes of either Click, found at run time; the caller uses their ``format_message()``.)"""
    import importlib

    usage: list[type[Any]] = []
    abort: list[type[Any]] = []
    other: list[type[Any]] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(mod.UsageError)
        if hasattr(mod, "Abort"):
            abort.append(mod.Abort)
        other.append(mod.ClickException)
    import typer

    abort.append(typer.Abort)
    return tuple(usage), tuple(abort), tuple(other)


def _invoke(args: list[str]) -> None:
    """The Typer app without Click's standalone handling, so a usage error is one line
    (``stageflow: error: …``, exit 2) like every other bad input, and a missing optional dependency
    names the extra that installs it."""
    from stageflow.errors import BadInput, JobFailed

    usage, abort, other = _click_exceptions()
    try:
        code = app(args=args, prog_name="stageflow", standalone_mode=False)
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `stageflow pools`: the group's help, as Click
            sys.stdout.write(exc.format_message() + "\n")
            raise SystemExit(2) from None
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "stageflow"
        raise BadInput(f"{exc.format_message()} (see '{where} --help')") from None
    except abort:
        raise KeyboardInterrupt from None
    except other as exc:
        raise JobFailed(exc.format_message()) from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        raise BadInput(
            f"{top} is not installed: this needs the {EXTRAS[top]} extra "
            f'(pip install "stageflow[{EXTRAS[top]}]")'
        ) from None
    # As Click's standalone mode: a command always ends in SystemExit (0 on success).
    raise SystemExit(code if isinstance(code, int) else 0)


def run_app(args: list[str]) -> None:
    """The Typer app with the CLI's error contract (one line and an exit code; --debug: traceback)."""
    run_command(lambda: _invoke(args), debug="--debug" in args)


if __name__ == "__main__":
    main()
