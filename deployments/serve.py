"""`stageflow serve`: the single-machine 24/7 mode. Every deployment in prefect.yaml is served by one
process (Prefect's ``serve``) with its schedules, reading the same file `prefect deploy` reads, so
the two modes never drift apart. Deployments marked ``serve: false`` (the GPU inference child, which
belongs on a GPU work pool) are left out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageflow.errors import BadInput

if TYPE_CHECKING:
    from prefect.flows import Flow


def _schedules(entries: list[dict[str, Any]]) -> list[Any]:
    from prefect.schedules import Cron, Interval

    out = []
    for s in entries or []:
        active = s.get("active", True)
        if "cron" in s:
            out.append(Cron(s["cron"], timezone=s.get("timezone"), active=active))
        elif "interval" in s:
            out.append(Interval(float(s["interval"]), timezone=s.get("timezone"), active=active))
        else:
            raise BadInput(f"prefect.yaml schedule {s} has neither cron nor interval")
    return out


def _concurrency(value: Any) -> Any:
    """prefect.yaml's ``concurrency_limit`` (an int, or ``{limit, collision_strategy}``)."""
    if value is None or isinstance(value, int):
        return value
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig.model_validate(value)


def load_served_deployments(prefect_yaml: Path, only: list[str] | None = None) -> list[Any]:
    """RunnerDeployments for prefect.yaml's deployments (all, or the names in ``only``)."""
    import yaml
    from prefect.flows import load_flow_from_entrypoint
    from prefect.types.entrypoint import EntrypointType

    if not prefect_yaml.is_file():
        raise BadInput(f"{prefect_yaml} not found: run from the project root or pass --prefect-yaml PATH")
    doc = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    entries = [d for d in doc.get("deployments") or [] if d.get("serve", True)]
    known = [d["name"] for d in entries]
    if only:
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise BadInput(f"unknown deployment(s) {', '.join(unknown)} (served: {', '.join(known)})")
        entries = [d for d in entries if d["name"] in only]
    deployments = []
    for d in entries:
        flow: Flow[..., Any] = load_flow_from_entrypoint(d["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                parameters=d.get("parameters") or {},
                schedules=_schedules(d.get("schedules") or []),
                tags=d.get("tags") or [],
                concurrency_limit=_concurrency(d.get("concurrency_limit")),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def _runner(limit: int | None) -> Any:
    """A Prefect Runner whose SIGTERM (and SIGINT) stops the runs it started for real (see
    :mod:`stageflow.deployments.shutdown`) and never pauses the deployments' schedules."""
    import asyncio
    import signal
    import sys

    from prefect.runner import Runner
    from stageflow.deployments.shutdown import crash_runs, started_runs

    class StageflowRunner(Runner):
        def handle_sigterm(self, signum: int = signal.SIGTERM, *args: Any, **kwargs: Any) -> None:
            name = signal.Signals(signum).name if isinstance(signum, int) else "SIGTERM"
            print(f"stageflow serve: {name} received: stopping the runs in progress", flush=True)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut this short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for line in crash_runs(started_runs(self), f"stageflow serve stopped by {name}"):
                print(f"stageflow serve: {line}", flush=True)
            try:  # end start()'s loops; asyncio.run then returns and the process exits 0
                self._stop_task = asyncio.get_running_loop().create_task(self.astop())
            except RuntimeError:  # not inside the loop (cannot happen in serve_all): plain exit
                sys.exit(0)

    runner = StageflowRunner(pause_on_shutdown=False, limit=limit)
    signal.signal(signal.SIGINT, runner.handle_sigterm)  # start() installs the SIGTERM one
    return runner


def serve_all(prefect_yaml: Path, only: list[str] | None = None, limit: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop the runs in progress (processes killed, runs Crashed,
    notified). Stopping never pauses the deployments' schedules: another ``stageflow serve`` of the
    same deployments, or this one restarted, keeps them running."""
    import asyncio
    import os

    # Runs are child processes of this one: stageflow's loggers reach their Prefect run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "stageflow")
    deployments = load_served_deployments(prefect_yaml, only)
    runner = _runner(limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"stageflow serve: serving {len(deployments)} deployment(s): {names}", flush=True)
    asyncio.run(runner.start())
