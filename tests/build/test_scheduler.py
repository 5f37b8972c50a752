"""The scheduler on its own: dependency order, the concurrency bound, keep-going and fail-fast."""

from __future__ import annotations

import threading

from stageflow.build.model import ProcessTracker, TaskResult
from stageflow.build.scheduler import memory_limited, schedule

DEPS = {
    "a": frozenset(),
    "b": frozenset({"a"}),
    "c": frozenset({"a"}),
    "d": frozenset({"b", "c"}),
    "e": frozenset(),
    "f": frozenset({"e"}),
}


def _run(fail: set[str] = frozenset(), concurrency: int = 2, fail_fast: bool = False):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    finished: list[str] = []
    barrier_seen: list[set[str]] = []

    def work(name: str) -> TaskResult:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            barrier_seen.append(set(finished))
        with lock:
            state["now"] -= 1
            finished.append(name)
        return TaskResult(name, "h", "failed" if name in fail else "built")

    results = schedule(
        list(DEPS), DEPS, work, concurrency=concurrency, fail_fast=fail_fast, tracker=ProcessTracker()
    )
    return results, finished, state["max"]


def test_dependencies_first_and_bounded_concurrency():
    results, finished, peak = _run(concurrency=2)
    assert {r.status for r in results.values()} == {"built"}
    for name, deps in DEPS.items():
        assert all(finished.index(d) < finished.index(name) for d in deps)
    assert peak <= 2


def test_failure_blocks_only_dependents():
    results, finished, _ = _run(fail={"b"})
    assert results["b"].status == "failed" and results["d"].status == "blocked"
    assert "dependency b failed" in results["d"].reason
    assert {results[n].status for n in "acef"} == {"built"} and "d" not in finished


def test_fail_fast_starts_nothing_more():
    results, finished, _ = _run(fail={"a"}, concurrency=1, fail_fast=True)
    assert finished == ["a"]
    assert {results[n].status for n in "bcdef"} == {"blocked"}


def test_memory_cap_limits_concurrency():
    assert memory_limited(4, 1) == 4
    assert memory_limited(64, 10**9) == 1
