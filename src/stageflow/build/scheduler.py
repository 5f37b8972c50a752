"""The parallel scheduler: runs one unit of work per workspace as soon as its dependencies have
finished, up to ``concurrency`` at once. Work the runner coalesces (``shared``: TypeScript 7 builds
that one compiler process runs together, stageflow.build.nativetsc) is started as soon as it is
ready, whatever the count, and all of it running together takes one slot. A failure blocks the
failed workspace's dependents while independent work continues; ``fail_fast`` stops everything
(running processes are terminated).

Knows nothing about caches, runners or git: it calls ``work(name)`` and reads the status it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from stageflow.build.model import ProcessTracker, TaskResult
from stageflow.build.probe import default_concurrency, memory_limited

OK_STATUSES = frozenset({"built", "cached", "skipped", "planned"})

__all__ = ["OK_STATUSES", "default_concurrency", "memory_limited", "schedule"]


def schedule(
    names: Sequence[str],
    deps: Mapping[str, frozenset[str]],
    work: Callable[[str], TaskResult],
    *,
    concurrency: int,
    fail_fast: bool,
    tracker: ProcessTracker,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    shared: Callable[[str], bool] | None = None,
) -> dict[str, TaskResult]:
    """Run ``work`` for each of ``names`` in dependency order; return every name's result."""
    subset = set(names)
    waiting = {n: set(deps.get(n, frozenset())) & subset for n in names}
    dependents: dict[str, set[str]] = {n: set() for n in names}
    for n, ds in waiting.items():
        for d in ds:
            dependents[d].add(n)
    order = {n: i for i, n in enumerate(names)}
    ready = sorted((n for n, ds in waiting.items() if not ds), key=order.__getitem__)
    results: dict[str, TaskResult] = {}
    running: dict[Future[TaskResult], str] = {}
    in_shared: set[str] = set()  # running work that shares one slot
    stopped = False

    def slots_used() -> int:
        return len(running) - len(in_shared) + (1 if in_shared else 0)

    def finish(result: TaskResult) -> None:
        results[result.name] = result
        if on_done is not None:
            on_done(result)

    def block(failed: str) -> None:
        stack = list(dependents[failed])
        while stack:
            n = stack.pop()
            if n in results:
                continue
            finish(TaskResult(n, "", "blocked", reason=f"not built: dependency {failed} failed"))
            ready[:] = [r for r in ready if r != n]
            stack.extend(dependents[n])

    threads = max(1, concurrency) + (min(len(names), 64) if shared is not None else 0)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stageflow-build") as pool:
        while ready or running:
            for name in list(ready):
                if stopped:
                    break
                coalesced = shared is not None and shared(name)
                if not coalesced and slots_used() >= concurrency:
                    continue
                if coalesced and not in_shared and slots_used() >= concurrency:
                    continue
                ready.remove(name)
                if coalesced:
                    in_shared.add(name)
                if on_start is not None:
                    on_start(name)
                running[pool.submit(work, name)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: order[running[f]]):
                name = running.pop(future)
                in_shared.discard(name)
                try:
                    result = future.result()
                except Exception as exc:  # a bug in work(): report it as this workspace's failure
                    result = TaskResult(name, "", "failed", reason=f"{type(exc).__name__}: {exc}")
                if stopped and result.status == "failed" and result.exit_code in (130, 143):
                    result.reason = result.reason or "stopped by --fail-fast"
                finish(result)
                if result.status in OK_STATUSES:
                    for n in sorted(dependents[name], key=order.__getitem__):
                        waiting[n].discard(name)
                        if not waiting[n] and n not in results:
                            ready.append(n)
                else:
                    block(name)
                    if fail_fast and not stopped:
                        stopped = True
                        tracker.cancel()
            if stopped:
                ready.clear()
    for n in names:
        if n not in results:
            finish(TaskResult(n, "", "blocked", reason="not built: stopped by --fail-fast"))
    return results
