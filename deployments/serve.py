"""`stageflow serve`: the single-machine 24/7 mode. Every deployment in prefect.yaml is served by one
process (Prefect's ``serve``) with its schedules, reading the same file `prefect deploy` reads, so
the two modes never drift apart. Deployments marked ``serve: false`` (the GPU inference child, which
belongs on a GPU work pool) are left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stageflow.errors import BadInput


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
        flow = load_flow_from_entrypoint(d["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                parameters=d.get("parameters") or {},
                schedules=_schedules(d.get("schedules") or []),
                tags=d.get("tags") or [],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def serve_all(prefect_yaml: Path, only: list[str] | None = None, limit: int | None = None) -> None:
    from prefect import serve

    deployments = load_served_deployments(prefect_yaml, only)
    serve(*deployments, limit=limit, print_starting_message=True)
