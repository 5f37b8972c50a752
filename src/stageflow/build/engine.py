"""The selective build engine: ``plan()`` discovers workspaces, selects what a change affects and
hashes every task; ``execute()`` restores cache hits and runs the misses through a build runner in
dependency order; ``report()`` turns the result into the documented JSON document.

Backends (runner, cache) are objects satisfying the Protocols in :mod:`stageflow.stages`, built from
the registries by :func:`build_backends`; this module never imports a plugin module or Prefect.
A failed build never stores a cache entry; cache problems are reported and treated as misses.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stageflow.build import changes, hashing, outputs, probe, scheduler, scripts, selection, workspaces
from stageflow.build.config import BuildConfig
from stageflow.build.model import BuildTask, CacheEntryCorrupt, ProcessTracker, TaskResult
from stageflow.build.records import STATE_DIR, BuildOptions, BuildPlan, BuildReport
from stageflow.build.report import failure_message, mermaid, report, timings_rows
from stageflow.errors import BadInput


# ----------------------------------------------------------------------------------------- plan
def plan(options: BuildOptions, config: BuildConfig) -> BuildPlan:
    """Discover, select and hash. Raises BadInput for every malformed input, before anything runs."""
    started = time.perf_counter()
    root = options.repo.resolve()
    ignore_edges = [
        *config.ignore_edges,
        *(f"{n} -> {d}" for n, o in config.workspaces.items() for d in o.ignore_dependencies),
    ]
    graph = workspaces.discover(root, ignore_edges)
    unknown = [n for n in config.workspaces if n not in graph.workspaces]
    if unknown:
        raise BadInput(f'[build.workspaces."{unknown[0]}"]: no such workspace in {root}: fix the name')
    changed = None
    if options.base is not None:
        changed = changes.changed_files(
            root, options.base, options.head, committed_only=options.committed_only
        )
    elif options.head != "HEAD":
        raise BadInput("--head needs --base: pass --base REF too")

    def changed_in(from_ref: str, to_ref: str) -> list[str]:
        where = f"--filter [{from_ref}{'...' + to_ref if to_ref else ''}]"
        return changes.changed_files(
            root, from_ref, to_ref or "HEAD", committed_only=bool(to_ref), options=(where, where)
        )

    sel = selection.select(
        graph,
        changed,
        filters=options.filters,
        role=options.role,
        roles=config.roles,
        global_inputs=config.global_inputs,
        changed_in=changed_in,
    )
    task = options.task or config.task
    runner_opts = config.runner_options
    pre_post = runner_opts.get("pre_post")
    if pre_post is None:
        pre_post = scripts.manager_runs_pre_post(config.runner or graph.manager, root)
    chains = {n: scripts.command_chain(graph.workspaces[n], task, pre_post=pre_post) for n in sel.run}
    outs = {
        n: list((config.workspaces.get(n) and config.workspaces[n].outputs) or config.outputs)
        for n in sel.run
    }
    state = root / STATE_DIR
    if not options.dry_run:  # a dry run writes nothing anywhere
        _ensure_state_dir(state)
    files = changes.file_ids(root)
    env = {k: os.environ.get(k, "") for k in sorted(config.env)}
    lock = hashing.Lockfile(root)
    node = hashing.node_version(state if state.is_dir() else None, remember=not options.dry_run)
    gdigest = hashing.global_hash(root, files, config.global_inputs, lock, env, node)
    hashes = hashing.task_hashes(
        graph, sel.run, files, outs, {n: [c for _, c in ch] for n, ch in chains.items()}, lock, gdigest, task
    )
    concurrency = options.concurrency or config.concurrency or scheduler.default_concurrency()
    memory_mb = config.memory_mb
    return BuildPlan(
        options,
        config,
        graph,
        sel,
        graph.levels(sel.run),
        {n: hashes[n] for n in sel.run},
        outs,
        chains,
        task,
        concurrency,
        memory_mb,
        warnings=list(graph.warnings),
        plan_s=time.perf_counter() - started,
    )


def _ensure_state_dir(state: Path) -> None:
    try:
        state.mkdir(exist_ok=True)
        ignore = state / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# created by stageflow build: caches and state, never committed\n*\n")
    except OSError:
        pass


# ----------------------------------------------------------------------------------------- state
def _state_file(plan: BuildPlan, name: str) -> Path:
    return plan.state_dir / "state" / probe.state_file_name(name)


def up_to_date(plan: BuildPlan, name: str) -> str | None:
    """The recorded log when the outputs on disk were produced for this very hash and are untouched."""
    if name not in plan.fresh:
        plan.fresh[name] = _recorded_log(plan, name)
    return plan.fresh[name]


def _recorded_log(plan: BuildPlan, name: str) -> str | None:
    try:
        data = json.loads(_state_file(plan, name).read_text())
    except (OSError, ValueError):
        return None
    ws = plan.graph.workspaces[name]
    if data.get("hash") != plan.hashes[name]:
        return None
    if data.get("outputs") != [list(t) for t in outputs.fingerprint(ws.path, plan.outputs[name])]:
        return None
    return str(data.get("log", ""))


def _record_state(plan: BuildPlan, name: str, log: str | None) -> None:
    plan.fresh.pop(name, None)
    path = _state_file(plan, name)
    try:
        if log is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        ws = plan.graph.workspaces[name]
        doc = {
            "hash": plan.hashes[name],
            "outputs": outputs.fingerprint(ws.path, plan.outputs[name]),
            "log": log,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # state only saves work; without it the cache answers


# ----------------------------------------------------------------------------------------- backends
class _Deferred:
    """A backend built on first use: a run where every workspace is up to date never loads plugins."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._backend: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._backend is None:
                self._backend = self._factory()
        return getattr(self._backend, name)


def build_backends(plan: BuildPlan, plugins: Any = None) -> tuple[Any, Any]:
    """The configured (or detected) runner and cache, built through the registries. Built at once
    (so a misconfigured backend is a BadInput before anything runs) unless every workspace of the run
    is already up to date, in which case they are deferred and, in practice, never built."""
    cfg = plan.config
    cache_opts = dict(cfg.cache_options)
    if cfg.cache == "local":
        raw = cache_opts.get("dir") or f"{STATE_DIR}/cache"
        cache_opts["dir"] = str((plan.graph.root / Path(raw).expanduser()).resolve())

    loaded: list[Any] = [plugins] if plugins is not None else []
    lock = threading.Lock()

    def manager() -> Any:
        with lock:
            if not loaded:
                loaded.append(_build_plugin_manager())
            return loaded[0]

    runner_opts = dict(cfg.runner_options)
    if plan.options.warm_tsc is not None:
        runner_opts["warm_tsc"] = plan.options.warm_tsc
        if plan.options.warm_tsc is False:  # --no-warm-tsc: every tsc its own, plain process
            runner_opts.setdefault("native_tsc", False)

    def runner() -> Any:
        return manager().build("build_runners", cfg.runner or plan.graph.manager, runner_opts)

    def cache() -> Any:
        return manager().build("build_caches", cfg.cache, cache_opts)

    idle = (
        not plan.options.dry_run
        and not plan.options.force
        and all(not plan.chains[n] or up_to_date(plan, n) is not None for n in plan.selection.run)
    )
    if idle:
        return _Deferred(runner), _Deferred(cache)
    return runner(), cache()


#: The stage kinds a build uses: the plugin manager loads only their built-in modules (the others,
#: video, sync, ..., only cost import time here: about a quarter of a second of every build).
BUILD_KINDS = frozenset({"build_runners", "build_caches"})


def _build_plugin_manager() -> Any:
    """The process-wide plugin manager when one is already loaded; otherwise one with the build
    kinds' built-in modules and every third-party plugin (the kernel's ``plugins_for``)."""
    from stageflow.plugin_manager import plugins_for

    return plugins_for(BUILD_KINDS)


def cache_status(plan: BuildPlan, cache: Any, name: str) -> str:
    """For --dry-run: ``up-to-date``, ``hit``, ``miss`` or ``unknown`` (a cache that cannot tell)."""
    if not plan.chains[name]:
        return ""
    if up_to_date(plan, name) is not None:
        return "up-to-date"
    contains = getattr(cache, "contains", None)
    if contains is None:
        return "unknown"
    try:
        return "hit" if contains(plan.hashes[name]) else "miss"
    except OSError:
        return "miss"


# ----------------------------------------------------------------------------------------- execute
def execute(
    plan: BuildPlan,
    runner: Any,
    cache: Any,
    *,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
) -> BuildReport:
    """Run the plan (or, with ``dry_run``, only look up cache status)."""
    started = time.perf_counter()
    warnings: list[str] = list(plan.warnings)
    if plan.options.dry_run:
        results = {}
        for n in plan.selection.run:
            status = "planned" if plan.chains[n] else "skipped"
            results[n] = TaskResult(
                n,
                plan.hashes[n],
                status,
                cache=cache_status(plan, cache, n),
                reason="" if plan.chains[n] else f"no '{plan.task}' script",
            )
        return BuildReport(plan, results, time.perf_counter() - started, warnings)

    tracker = ProcessTracker()
    concurrency = scheduler.memory_limited(plan.concurrency, plan.memory_mb)
    if concurrency < plan.concurrency:
        warnings.append(
            f"concurrency lowered from {plan.concurrency} to {concurrency}: available memory "
            f"fits {concurrency} builds of {plan.memory_mb} MB"
        )

    # builds that may run (not up to date): a runner keeps no more workers warm than can be used
    force = plan.options.force
    candidates = sum(
        1 for n in plan.selection.run if plan.chains[n] and (force or up_to_date(plan, n) is None)
    )
    at_once = max(1, min(concurrency, candidates))

    def work(name: str) -> TaskResult:
        return _build_one(plan, name, runner, cache, tracker, at_once)

    deps = {n: plan.graph.workspaces[n].internal for n in plan.selection.run}
    shared = None
    if candidates > 1 and callable(getattr(runner, "coalesces", None)):  # TypeScript 7 batches

        def shared(name: str) -> bool:
            return bool(plan.chains[name]) and runner.coalesces(
                plan.graph.workspaces[name], plan.graph.root, plan.task
            )

    try:
        results = scheduler.schedule(
            [n for lvl in plan.order for n in lvl],
            deps,
            work,
            concurrency=concurrency,
            fail_fast=plan.options.fail_fast,
            tracker=tracker,
            on_start=on_start,
            on_done=on_done,
            shared=shared,
        )
    finally:
        _close(runner)
    for r in results.values():
        warnings.extend(f"{r.name}: {w}" for w in r.warnings)
        if r.status == "blocked":
            r.hash = plan.hashes[r.name]
    return BuildReport(plan, results, time.perf_counter() - started, warnings)


def _close(backend: Any) -> None:
    """Let a runner release what it keeps between tasks (warm workers); a deferred backend that was
    never built has nothing to release."""
    if isinstance(backend, _Deferred):
        backend = backend._backend
    close = getattr(backend, "close", None) if backend is not None else None
    if callable(close):
        close()


def _build_one(
    plan: BuildPlan, name: str, runner: Any, cache: Any, tracker: ProcessTracker, concurrency: int = 1
) -> TaskResult:
    ws = plan.graph.workspaces[name]
    key = plan.hashes[name]
    started = time.perf_counter()
    if not plan.chains[name]:
        return TaskResult(name, key, "skipped", reason=f"no '{plan.task}' script")
    result = TaskResult(name, key, "built")
    if not plan.options.force:
        log = up_to_date(plan, name)
        if log is not None:
            return TaskResult(name, key, "cached", time.perf_counter() - started, cache="up-to-date", log=log)
        restored = _restore(plan, name, cache, result)
        if restored is not None:
            _record_state(plan, name, restored)
            return TaskResult(
                name,
                key,
                "cached",
                time.perf_counter() - started,
                cache="hit",
                log=restored,
                warnings=result.warnings,
            )
    _record_state(plan, name, None)
    result.cache = "miss"
    env = scripts.task_env(ws, plan.graph.root, plan.task, memory_mb=plan.memory_mb)
    for var in plan.config.env:
        env.setdefault(var, os.environ.get(var, ""))
    outcome = runner.run(BuildTask(ws, plan.graph.root, plan.task, env, tracker, concurrency))
    result.duration_s = time.perf_counter() - started
    result.log = outcome.log
    result.exit_code = outcome.exit_code
    if outcome.exit_code != 0:
        result.status = "failed"
        stopped = tracker.cancelled.is_set() and outcome.exit_code in (130, 143)
        result.reason = "stopped by --fail-fast" if stopped else f"exit code {outcome.exit_code}"
        return result
    absent = outputs.missing(ws.path, plan.outputs[name])
    if absent:
        result.warnings.append(
            f"declared outputs missing after a successful build: {', '.join(absent)} "
            f'(not cached; fix the build or set [build.workspaces."{name}"] outputs)'
        )
    else:
        try:
            cache.store(key, ws.path, plan.outputs[name], outcome.log)
        except (OSError, CacheEntryCorrupt) as exc:
            result.warnings.append(f"cache store failed, not cached: {exc}")
    _record_state(plan, name, outcome.log)
    return result


def _restore(plan: BuildPlan, name: str, cache: Any, result: TaskResult) -> str | None:
    ws = plan.graph.workspaces[name]
    key = plan.hashes[name]
    fd, tmp = tempfile.mkstemp(prefix="stageflow-fetch-")
    os.close(fd)
    dest = Path(tmp)
    try:
        archive = cache.fetch(key, dest)
        if archive is None:
            return None
        return outputs.unpack(
            Path(archive),
            ws.path,
            plan.outputs[name],
            task_hash=key,
            signature_key=getattr(cache, "signature_key", None),
        )
    except CacheEntryCorrupt as exc:
        result.warnings.append(f"corrupt cache entry treated as a miss: {exc}")
        _discard = getattr(cache, "discard", None)
        if _discard is not None:
            _discard(key)
    except OSError as exc:
        result.warnings.append(f"cache read failed, treated as a miss: {exc}")
    finally:
        dest.unlink(missing_ok=True)
    return None


__all__ = [
    "STATE_DIR",
    "BuildOptions",
    "BuildPlan",
    "BuildReport",
    "build_backends",
    "cache_status",
    "execute",
    "failure_message",
    "mermaid",
    "plan",
    "report",
    "timings_rows",
    "up_to_date",
]
