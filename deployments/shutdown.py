"""What `stageflow serve` does on SIGTERM/SIGINT, before it exits: every flow run it started is
stopped for real and recorded as such.

Prefect 3.8.8's runner, on SIGTERM, calls its async ``stop()`` without awaiting it and exits: the run
stays "Running" for good, nothing is notified, and the run's processes live on (a build script runs in
its own session, so even the run's process group is not all of it). Here, for each run:

1. the whole process tree of the run (every descendant, whatever its session or group) gets SIGTERM,
   then SIGKILL after a grace period (psutil: the process table, portably);
2. the run is set Crashed with a message naming the signal;
3. the project's notifier ([notify]) is told, with a link to the run, as the flows' own crash hooks do.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State


@dataclass(frozen=True)
class StartedRun:
    flow_run_id: Any
    pid: int | None


def kill_tree(pid: int, grace_s: float = 10.0) -> list[int]:
    """SIGTERM ``pid`` and all its descendants (and the process groups they lead), SIGKILL what is left
    after ``grace_s``. Never signals this process or its own group. Returns the pids signalled."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    me, my_group = os.getpid(), os.getpgrp()
    procs = [p for p in procs if p.pid != me]
    groups = set()
    for p in procs:
        try:
            groups.add(os.getpgid(p.pid))
        except ProcessLookupError:
            pass
    for group in groups - {my_group}:
        try:
            os.killpg(group, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]


def crash_runs(runs: Iterable[StartedRun], reason: str, grace_s: float = 10.0) -> list[str]:
    """Kill each run's processes, set it Crashed (unless it already ended) and notify. Never raises:
    a shutdown must finish. Returns one line per run, for the log."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from stageflow.orchestration import notify_failure

    lines = []
    runs = list(runs)
    with get_client(sync_client=True) as client:
        running = {}
        for run in runs:  # which runs were still going before anything was signalled
            try:
                flow_run = client.read_flow_run(run.flow_run_id)
            except Exception as exc:
                lines.append(f"flow run {run.flow_run_id}: unreadable: {type(exc).__name__}: {exc}")
                continue
            if flow_run.state is None or not flow_run.state.is_final():
                running[run.flow_run_id] = flow_run
        for run in runs:
            if run.pid:
                kill_tree(run.pid, grace_s)
        for flow_run_id, flow_run in running.items():
            try:
                # the run's own SIGTERM handling may have set Crashed already, without its hooks
                now = client.read_flow_run(flow_run_id).state
                state: State[Any] = Crashed(message=f"{reason}: its processes were stopped")
                if now is not None and now.is_final():
                    state = now
                else:
                    client.set_flow_run_state(flow_run_id, state, force=True)
                flow = client.read_flow(flow_run.flow_id)
                notify_failure(flow, flow_run, state)
                lines.append(f"flow run {flow_run.name} ({flow.name}): {state.name}, processes stopped")
            except Exception as exc:  # reported; the next run is still handled
                lines.append(f"flow run {run.flow_run_id}: not marked Crashed: {type(exc).__name__}: {exc}")
    return lines


def started_runs(runner: Any) -> list[StartedRun]:
    """The flow runs a Prefect Runner has running now, with their process ids (3.8.8's internals:
    its process manager, and the older process map as a fallback)."""
    found: dict[Any, int | None] = {}
    manager = getattr(runner, "_process_manager", None)
    if manager is not None:
        for flow_run_id in manager.flow_run_ids():
            handle = manager.get(flow_run_id)
            found[flow_run_id] = getattr(handle, "pid", None)
    for flow_run_id, entry in dict(getattr(runner, "_flow_run_process_map", {}) or {}).items():
        found.setdefault(flow_run_id, entry.get("pid"))
    return [StartedRun(k, v) for k, v in found.items()]
