"""CLI commands for the build flow family: ``stageflow build REPO`` (selective build of an
npm/pnpm/yarn workspace monorepo).

Engines are imported inside the command so ``stageflow --help`` stays fast; Prefect is imported only
with ``--prefect``. Progress goes to stderr (a line per workspace, a rich bar on a TTY); ``--json``
prints one document on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _load_build_config(config: Path | None, repo: Path) -> Any:
    from stageflow.config import CONFIG_NAME, load_config

    if config is None and (repo / CONFIG_NAME).is_file():
        config = repo / CONFIG_NAME
    return load_config(config).build


class _Progress:
    """Per-workspace lines on stderr, and a progress bar when stderr is a terminal."""

    def __init__(self, total: int, *, logs: str, quiet: bool):
        import threading

        self.logs = logs
        self.quiet = quiet
        self.lock = threading.Lock()
        self.bar: Any = None
        self.bar_task: Any = None
        self.running: list[str] = []  # workspaces building now, oldest first (shown on the bar)
        if not quiet and sys.stderr.isatty() and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("building"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[running]}", markup=False),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar_task = self.bar.add_task("build", total=total, running="")
            self.bar.start()

    def _echo(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            typer.echo(text, err=True)

    @staticmethod
    def running_label(running: list[str], width: int = 48) -> str:
        """The workspaces building now, for the bar: ``@app/web +2 more`` when they do not fit."""
        if not running:
            return ""
        label = ", ".join(running)
        if len(label) <= width:
            return label
        return f"{running[0]} +{len(running) - 1} more" if len(running) > 1 else running[0][: width - 1] + "…"

    def _show_running(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar_task, running=self.running_label(self.running))

    def start(self, name: str) -> None:
        with self.lock:
            self.running.append(name)
            self._show_running()

    def done(self, result: Any) -> None:
        with self.lock:
            if result.name in self.running:
                self.running.remove(result.name)
                self._show_running()
            if self.quiet:
                return
            detail = {"cached": f"cached ({result.cache})", "failed": f"FAILED ({result.reason})"}.get(
                result.status, result.status
            )
            if result.status in ("skipped", "blocked") and result.reason:
                detail = f"{result.status} ({result.reason})"
            show_log = self.logs == "full" or (self.logs == "errors" and result.status == "failed")
            if show_log and result.log.strip():
                for line in result.log.rstrip().splitlines():
                    self._echo(f"{result.name}: {line}")
            self._echo(f"{result.name:<28} {detail:<24} {result.duration_s:6.2f}s")
            if self.bar is not None:
                self.bar.advance(self.bar_task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def build_cmd(
    repo: Annotated[
        Path,
        typer.Argument(help="Root of the monorepo (holds package.json workspaces or pnpm-workspace.yaml)."),
    ] = Path("."),
    base: Annotated[
        str | None,
        typer.Option("--base", help="Build only what changed since this git ref (plus dependents)."),
    ] = None,
    head: Annotated[str, typer.Option("--head", help="Compare --base with this ref.")] = "HEAD",
    committed_only: Annotated[
        bool, typer.Option("--committed-only", help="Ignore uncommitted and untracked changes.")
    ] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-F",
            help="Turborepo filter: NAME or glob, NAME... (with dependencies), ...NAME (with "
            "dependents), ^ (without NAME itself), ./dir, {./dir/*}, [ref], [a...b], NAME...[ref], "
            "!EXPR; repeatable (union, exclusions last).",
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            "--role", help="Build the [build.roles.R] subset of stageflow.toml (plus dependencies)."
        ),
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="Script to run (default: build).")] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-j", min=1, help="Builds at once (default: cores).")
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop everything at the first failure.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: affected set, order, hashes, hit or miss.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Ignore cache hits and rebuild.")] = False,
    logs: Annotated[
        str,
        typer.Option("--logs", help="Task logs on stderr (replayed on a cache hit): full, errors or none."),
    ] = "full",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", dir_okay=False, help="Project file (default: REPO/stageflow.toml)."),
    ] = None,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run as the selective_build Prefect flow.")
    ] = False,
    no_warm_tsc: Annotated[
        bool,
        typer.Option(
            "--no-warm-tsc",
            help="Run every tsc as its own process instead of in warm TypeScript workers "
            "(same as runner_options = {warm_tsc = false}).",
        ),
    ] = False,
) -> None:
    """Build only what a change affects, in dependency order, in parallel, with a content-hash cache.

    The cache is [build] cache = "local" | "http" with cache_options: local {dir, max_size_mb},
    http {url, token_env, timeout_s, max_entry_mb (an entry larger than this is a miss, never
    buffered)}; both take signature_key_env, the NAME of an env var holding an HMAC key (e.g.
    TURBO_REMOTE_CACHE_SIGNATURE_KEY): entries are signed and a wrongly signed one is a miss."""
    from stageflow.build import engine
    from stageflow.errors import BadInput, JobFailed

    if logs not in ("full", "errors", "none"):
        raise BadInput(f"--logs '{logs}': use full, errors or none")
    build_config = _load_build_config(config, repo)
    options = engine.BuildOptions(
        repo=repo,
        base=base,
        head=head,
        committed_only=committed_only,
        filters=list(filters or []),
        role=role,
        task=task,
        concurrency=concurrency,
        fail_fast=fail_fast,
        dry_run=dry_run,
        force=force,
        warm_tsc=False if no_warm_tsc else None,
    )
    if prefect:
        from stageflow.flows.selective_build import SelectiveBuildParams, selective_build

        params = SelectiveBuildParams.from_options(options, config)
        # The run ends Failed in the UI exactly when this command exits 1 (not "Completed with
        # failures"): the flow's JobFailed carries the report this command prints.
        state = selective_build(params, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            doc = getattr(outcome, "report", None)
            if doc is None:
                raise outcome
        else:
            doc = outcome
    else:
        stamp = _StampGuard(options, config, build_config)
        plan = engine.plan(options, build_config)
        runner, cache = engine.build_backends(plan)
        progress = _Progress(0 if dry_run else len(plan.selection.run), logs=logs, quiet=dry_run)
        try:
            rep = engine.execute(plan, runner, cache, on_start=progress.start, on_done=progress.done)
        finally:
            progress.close()
        doc = engine.report(rep)
        stamp.finish(plan, doc)
    _print(doc, as_json=as_json)
    if doc["failed"] or doc["blocked"]:
        raise JobFailed(doc.get("failure") or _failure_line(doc))


class _StampGuard:
    """Keeps the fast path's stamp (:mod:`stageflow.fast.build`) honest: a build that may change
    state discards it first; a successful run without selection flags records a new one, but only when
    the inputs digest taken before the plan equals the one taken after the run."""

    def __init__(self, options: Any, config: Path | None, build_config: Any):
        from stageflow.build import probe
        from stageflow.fast import build as fastpath

        self.root = options.repo.resolve()
        self.build_config = build_config
        self.before: str | None = None
        self.globs: list[str] = []
        self.config: Path | None = None
        if options.dry_run:
            self.eligible = False
            return
        fastpath.discard(self.root)
        self.eligible = (
            not options.force
            and options.base is None
            and options.head == "HEAD"
            and not options.committed_only
            and not options.filters
            and options.role is None
            and options.task is None
        )
        source = probe.resolve_config(options.repo, config)
        if not self.eligible or source is False:
            self.eligible = False
            return
        from stageflow.build import workspaces
        from stageflow.errors import BadInput

        try:
            self.globs = workspaces.workspace_globs(self.root)[0]
        except BadInput:
            self.eligible = False  # the plan reports it
            return
        self.config = source if isinstance(source, Path) else None
        self.before = probe.inputs_digest(self.root, self.config, build_config.env, self.globs)

    def finish(self, plan: Any, doc: dict[str, Any]) -> None:
        from stageflow.build import probe
        from stageflow.fast import build as fastpath

        if not self.eligible or self.before is None or doc["failed"] or doc["blocked"]:
            return
        cfg = self.build_config
        if probe.inputs_digest(self.root, self.config, cfg.env, self.globs) != self.before:
            return  # something changed while building: the next run decides on the normal path
        tasks = [
            {
                "name": n,
                "hash": plan.hashes[n],
                "dir": plan.graph.workspaces[n].rel,
                "outputs": list(plan.outputs[n]),
                "skip": "" if plan.chains[n] else f"no '{plan.task}' script",
            }
            for level in plan.order
            for n in level
        ]
        fastpath.record(
            self.root,
            config=self.config,
            env_vars=cfg.env,
            globs=self.globs,
            inputs=self.before,
            concurrency=cfg.concurrency,
            memory_mb=cfg.memory_mb,
            doc=doc,
            tasks=tasks,
        )


def _failure_line(doc: dict[str, Any]) -> str:
    failed = [t for t in doc["tasks"] if t["status"] == "failed"]
    if not failed:
        return "build stopped: " + ", ".join(doc["blocked"]) + " not built"
    first = failed[0]
    last = (first.get("log_tail") or "no output").strip().splitlines()[-1]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    blocked = f"; {len(doc['blocked'])} dependent workspace(s) not built" if doc["blocked"] else ""
    return (
        f"build failed: {first['name']} ({first.get('reason', '')}): {last}{more}{blocked}: fix it and rerun"
    )


def _print(doc: dict[str, Any], *, as_json: bool) -> None:
    for warning in doc["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    for t in doc["tasks"]:
        if t["status"] == "failed":
            typer.echo(f"--- {t['name']} failed ({t.get('reason', '')}); last lines of its log:", err=True)
            typer.echo(t.get("log_tail") or "(no output)", err=True)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    if doc["dry_run"]:
        typer.echo(
            f"changed files: {len(doc['changed'])}; affected: {', '.join(doc['affected']) or '(none)'}"
        )
        for i, level in enumerate(doc["order"], start=1):
            typer.echo(f"level {i}: {', '.join(level)}")
        for t in doc["tasks"]:
            state = t["cache"] or t["status"]
            typer.echo(f"  {t['name']:<28} {t['hash'][:16]}  {state}")
        return
    typer.echo(
        f"built {len(doc['built'])}, cached {len(doc['cached'])}, skipped {len(doc['skipped'])}, "
        f"failed {len(doc['failed'])}, blocked {len(doc['blocked'])} in {doc['duration_s']:.2f}s"
    )


def register(app: typer.Typer) -> None:
    """Add this family's commands to the root app. Plugins may add flags to ``build``
    (``register_commands``' ``add_option``: the npm runners' ``--stop-workers``)."""
    from stageflow.commands import extensible

    app.command("build")(extensible("build", build_cmd))
