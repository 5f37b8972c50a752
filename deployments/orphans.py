"""Flow runs whose process died without a word (``kill -9``, OOM killer, power loss) are set Crashed the
next time stageflow starts, instead of showing "Running" for good.

A ``--prefect`` run executes in the CLI's own process, against the ephemeral server's SQLite database
(or a configured server); nothing else would ever notice that process vanish. So every ``--prefect``
command tags the flow runs it creates with the process that runs them
(``stageflow-process:<host>:<pid>:<start time>``, through :func:`prefect.tags`), and at its start
:func:`reap_orphans` looks for runs still Pending/Running with such a tag from *this* host whose
process no longer exists (the pid is gone, or was reused by a process started at another time), sets
them Crashed with a message naming the process, and notifies ([notify]) as the flows' crash hooks do.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

TAG_PREFIX = "stageflow-process:"


@dataclass(frozen=True)
class RunProcess:
    host: str
    pid: int
    started: int  # the process's start time, 1/100 s since the epoch (tells a reused pid apart)

    @property
    def tag(self) -> str:
        return f"{TAG_PREFIX}{self.host}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, tag: str) -> RunProcess | None:
        if not tag.startswith(TAG_PREFIX):
            return None
        try:
            host, pid, started = tag[len(TAG_PREFIX) :].rsplit(":", 2)
            return cls(host, int(pid), int(started))
        except ValueError:
            return None

    def alive(self) -> bool:
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return proc.is_running() and int(proc.create_time() * 100) == self.started
        except psutil.NoSuchProcess:
            return False


def this_process() -> RunProcess:
    import os

    import psutil

    pid = os.getpid()
    return RunProcess(socket.gethostname(), pid, int(psutil.Process(pid).create_time() * 100))


def process_tags() -> Any:
    """A context manager: flow runs created inside it carry this process's tag."""
    from prefect import tags

    return tags(this_process().tag)


def reap_orphans() -> list[str]:
    """Set Crashed every unfinished flow run of this host whose process is gone. Never raises (a
    command must still start); returns one line per run handled."""
    try:
        return _reap()
    except Exception as exc:  # pragma: no cover - an unreachable server is reported by the command
        return [f"orphaned-run check skipped: {type(exc).__name__}: {exc}"]


def _reap() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    from stageflow.orchestration import notify_failure

    host = socket.gethostname()
    lines = []
    unfinished = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))
    )
    with get_client(sync_client=True) as client:
        for flow_run in client.read_flow_runs(flow_run_filter=unfinished, limit=200):
            owners = [p for t in flow_run.tags if (p := RunProcess.parse(t)) and p.host == host]
            if not owners or any(p.alive() for p in owners):
                continue
            gone = owners[0]
            state: State[Any] = Crashed(
                message=f"its process (pid {gone.pid} on {gone.host}) ended without reporting "
                "(killed?); marked Crashed when stageflow next started"
            )
            client.set_flow_run_state(flow_run.id, state, force=True)
            try:
                notify_failure(client.read_flow(flow_run.flow_id), flow_run, state)
            except Exception:  # pragma: no cover - the state is what matters; the notifier logs
                pass
            lines.append(f"flow run {flow_run.name}: Crashed (pid {gone.pid} is gone)")
    return lines
