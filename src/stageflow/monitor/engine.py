"""The monitor engine: run every configured probe (in parallel, each under a timeout), compare with
the stored state and decide what to say.

Alerts go out on state change only: ok -> failing is an alert, failing -> ok a recovery, and a probe
failing longer than ``escalate_after_min`` gets one escalation. A probe that raises or times out is a
failure with the reason, never a crash of the monitor. Never notifies twice for one change.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stageflow.backend_refs import BackendRef
from stageflow.errors import ConfigError
from stageflow.stages import CheckResult, Message


class CheckSpec(BaseModel):
    """One probe: ``use`` names a `checks` backend, ``options`` its config."""

    model_config = ConfigDict(extra="forbid")
    name: str
    use: Annotated[str, BackendRef("checks")]
    options: dict[str, Any] = Field(default_factory=dict)


class MonitorConfig(BaseModel):
    """The ``[monitor]`` table of stageflow.toml."""

    model_config = ConfigDict(extra="forbid")
    checks: list[CheckSpec] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=50)
    escalate_after_min: float = Field(default=15.0, ge=0)
    recover_after: int = Field(default=2, ge=1, description="good ticks in a row before a recovery")
    # default: [notify] backend
    notifier: Annotated[str | None, BackendRef("notifiers", options="notifier_options")] = None
    notifier_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("checks")
    @classmethod
    def _unique(cls, checks: list[CheckSpec]) -> list[CheckSpec]:
        names = [c.name for c in checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique; repeated: {', '.join(dupes)}")
        return checks


@dataclass(frozen=True)
class Transition:
    check: str
    kind: Literal["alert", "recovery", "escalation"]
    detail: str
    since: str


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def run_checks(plugins: Any, specs: Sequence[CheckSpec], timeout_s: float) -> list[CheckResult]:
    """Build and run every probe concurrently; a probe that raises or overruns ``timeout_s`` fails."""
    probes = {}
    for spec in specs:
        probes[spec.name] = plugins.build("checks", spec.use, spec.options)  # bad names fail before any probe
    results: dict[str, CheckResult] = {}
    pool = cf.ThreadPoolExecutor(max_workers=max(1, min(16, len(probes))), thread_name_prefix="probe")
    try:
        futures = {pool.submit(probe.probe): name for name, probe in probes.items()}
        done, pending = cf.wait(futures, timeout=timeout_s)
        for future in done:
            name = futures[future]
            try:
                r = future.result()
                results[name] = CheckResult(name, bool(r.ok), r.detail)
            except Exception as exc:  # a broken probe is a failing probe
                results[name] = CheckResult(name, False, f"probe raised {type(exc).__name__}: {exc}")
        for future in pending:
            name = futures[future]
            results[name] = CheckResult(name, False, f"probe timed out after {timeout_s:g} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[s.name] for s in specs]


def evaluate(
    results: Sequence[CheckResult],
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime,
    escalate_after_min: float,
    recover_after: int = 2,
) -> tuple[list[Transition], dict[str, dict[str, Any]]]:
    """Compare results with the announced states. Returns the transitions to announce and new states.

    ``ok`` in a state is what was last *announced*. A failure is announced at once (detection within
    one tick); a recovery only after ``recover_after`` consecutive good results, so a flapping target
    gives one alert and one recovery, not a storm. A probe seen for the first time is announced only
    if it fails (a healthy start is not news)."""
    transitions: list[Transition] = []
    states: dict[str, dict[str, Any]] = {}
    stamp = _iso(now)
    for r in results:
        prev = previous.get(r.name)
        if prev is None or prev["ok"]:
            state = {
                "ok": r.ok,
                "detail": r.detail,
                "checked_at": stamp,
                "escalated": False,
                "ok_streak": 0,
                "since": prev["since"] if prev is not None and r.ok else stamp,
            }
            if not r.ok:
                transitions.append(Transition(r.name, "alert", r.detail, stamp))
        else:  # currently alerting
            streak = prev.get("ok_streak", 0) + 1 if r.ok else 0
            state = {
                "ok": False,
                "detail": r.detail,
                "checked_at": stamp,
                "since": prev["since"],
                "escalated": prev.get("escalated", False),
                "ok_streak": streak,
            }
            if r.ok and streak >= recover_after:
                transitions.append(Transition(r.name, "recovery", r.detail, prev["since"]))
                state.update(ok=True, since=stamp, escalated=False, ok_streak=0)
            elif not state["escalated"]:
                failing_for = now - datetime.fromisoformat(prev["since"])
                if failing_for >= timedelta(minutes=escalate_after_min):
                    transitions.append(Transition(r.name, "escalation", r.detail, prev["since"]))
                    state["escalated"] = True
        states[r.name] = state
    return transitions, states


def message_for(transitions: Sequence[Transition], total: int) -> Message:
    failing = [t for t in transitions if t.kind != "recovery"]
    level = (
        "error" if any(t.kind == "escalation" for t in transitions) else ("warning" if failing else "info")
    )
    icon = {"alert": "🔴", "recovery": "🟢", "escalation": "🚨"}
    lines = [f"{icon[t.kind]} {t.kind}: {t.check} — {t.detail} (since {t.since})" for t in transitions]
    recovered = sum(t.kind == "recovery" for t in transitions)
    title = f"stageflow monitor: {len(failing)} failing, {recovered} recovered"
    return Message(title=title, text="\n".join(lines), level=level, fields={"checks": str(total)})


def monitor_once(
    plugins: Any, config: MonitorConfig, store: Any, notifier: Any, now: datetime | None = None
) -> dict[str, Any]:
    """One monitor tick: probe, evaluate, notify on change, then persist the states.

    States are saved only after the notification went out, so a failed notification is retried on
    the next tick instead of being lost."""
    if not config.checks:
        raise ConfigError("no monitor checks configured: add [[monitor.checks]] tables to stageflow.toml")
    now = now or datetime.now(UTC)
    results = run_checks(plugins, config.checks, config.timeout_s)
    transitions, states = evaluate(
        results, store.monitor_states(), now, config.escalate_after_min, config.recover_after
    )
    failing = [r.name for r in results if not r.ok]
    logging.getLogger("stageflow.monitor").info(
        "monitor tick: %d checks, %d failing%s",
        len(results),
        len(failing),
        f" ({', '.join(failing)})" if failing else "",
    )
    if transitions:
        notifier.notify(message_for(transitions, len(results)))
    store.save_monitor_states(states)
    return {
        "checked_at": _iso(now),
        "checks": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results],
        "transitions": [t.__dict__ for t in transitions],
    }


def monitor_notifier(project: Any) -> Any:
    """The [monitor] notifier, else the [notify] one."""
    from stageflow.plugin_manager import get_plugin_manager

    m = project.monitor
    return get_plugin_manager().build(
        "notifiers",
        m.notifier or project.notify.backend,
        m.notifier_options if m.notifier else project.notify.options,
    )


def run_tick(project: Any) -> dict[str, Any]:
    """One tick for a loaded project config: the [monitor] notifier (else [notify]), the store, probes.
    Shared by the CLI and the monitor flow so both choose the notifier the same way."""
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.store import open_store

    plugins = get_plugin_manager()
    m = project.monitor
    notifier = monitor_notifier(project)
    store = open_store()
    try:
        return monitor_once(plugins, m, store, notifier)
    finally:
        store.close()
