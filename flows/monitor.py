"""The monitor flow: every minute (prefect.yaml / `stageflow serve`), probe every configured target
and alert on state changes only. Logic lives in stageflow.monitor.engine.

A tick where a check fails ends in a Failed state named "Checks failing" (red in the run list, the
failing checks in its message); the alert itself went out through the monitor's notifier on the
state change, so that state does not notify again. Each tick also notifies runs of any deployment
that crashed before their flow started (stageflow.monitor.crashes)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed

from stageflow.monitor import crashes, engine
from stageflow.orchestration import notify_failure, publish_table
from stageflow.runconfig import attach_run_logging, load_project

CHECKS_FAILING = "Checks failing"


@task(name="monitor-tick", task_run_name="monitor-tick", retries=0)
def monitor_tick_task(config_path: str | None) -> dict[str, Any]:
    return engine.run_tick(load_project(config_path))


@task(name="crashed-runs", task_run_name="crashed-runs", retries=0)
def crashed_runs_task(config_path: str | None) -> int:
    """Notify runs that crashed before their flow started (no flow hook saw them)."""
    return crashes.notify_unstarted_crashes(engine.monitor_notifier(load_project(config_path)))


def notify_unless_checks_failing(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure: a failing check was announced by the tick itself (on change only); any other
    failure of the run (bad config, store error) is notified as usual."""
    if state.name != CHECKS_FAILING:
        notify_failure(flow, flow_run, state)


@flow(name="monitor", on_failure=[notify_unless_checks_failing], on_crashed=[notify_failure])
def monitor(config_path: str | None = None) -> dict[str, Any]:
    """Probe every check in [monitor] of stageflow.toml; notify on alert, recovery and escalation."""
    attach_run_logging()
    report = monitor_tick_task(config_path)
    crashed = crashed_runs_task(config_path, return_state=True)
    if crashed.is_failed():  # the API hiccuped: the next tick asks again; the checks still count
        get_run_logger().warning("crashed runs not checked: %s", crashed.message)
    publish_table("monitor-checks", report["checks"], description=f"checked at {report['checked_at']}")
    failing = [c for c in report["checks"] if not c["ok"]]
    if failing:
        detail = "; ".join(f"{c['name']}: {c['detail']}" for c in failing)
        # Prefect unwraps a returned state: the call raises on Failed, so callers get the report
        return Failed(  # type: ignore[return-value]
            name=CHECKS_FAILING,
            message=f"{len(failing)} of {len(report['checks'])} checks failing: {detail}"[:1000],
            data=report,
        )
    return report
