"""`stageflow worker`: a Prefect worker whose SIGTERM/SIGINT stops its flow runs for real.

Prefect 3.8.8's ``prefect worker start``, on SIGTERM, exits and leaves the flow runs it started
"Running" for good, their processes orphaned and still working (tests/ops/test_restarts.py). This
wrapper runs the same command as a child and, on SIGTERM/SIGINT, finds the flow-run processes below it
(each carries ``PREFECT__FLOW_RUN_ID`` in its environment), kills their process trees, sets the runs
Crashed and notifies (:func:`stageflow.deployments.shutdown.crash_runs`), then stops the worker.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from stageflow.deployments.shutdown import StartedRun, crash_runs


def flow_run_processes(pid: int) -> list[StartedRun]:
    """The topmost descendants of ``pid`` that run a flow run (by their environment)."""
    import psutil

    found: dict[str, int] = {}
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:  # parents come before their descendants
        try:
            run_id = child.environ().get("PREFECT__FLOW_RUN_ID")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if run_id and run_id not in found:
            found[run_id] = child.pid
    return [StartedRun(k, v) for k, v in found.items()]


def run_worker(args: list[str]) -> int:
    """Run ``prefect worker start ARGS`` until it exits or this process is told to stop."""
    prefect = Path(sys.executable).with_name("prefect")
    worker = subprocess.Popen([str(prefect), "worker", "start", *args])
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while worker.poll() is None and not stopping:
        try:
            worker.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    if not stopping:
        return worker.returncode
    name = signal.Signals(stopping[0]).name
    for line in crash_runs(flow_run_processes(worker.pid), f"the worker got {name}"):
        print(f"stageflow worker: {line}", file=sys.stderr, flush=True)
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=30)
    return 0
