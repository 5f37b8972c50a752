"""A finished build as the documented ``--json`` document, the one-line failure message, the mermaid
graph and the timings table (the flow's artifacts)."""

from __future__ import annotations

from typing import Any

from stageflow.build.records import BuildReport

LOG_TAIL_LINES = 20


def _tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(log.rstrip().splitlines()[-lines:])


def report(rep: BuildReport) -> dict[str, Any]:
    """The ``--json`` document (workspace names as in package.json)."""
    plan = rep.plan
    tasks = []
    for level in plan.order:
        for n in level:
            r = rep.results[n]
            item: dict[str, Any] = {
                "name": n,
                "hash": plan.hashes[n],
                "status": r.status,
                "duration_s": round(r.duration_s, 3),
                "cache": r.cache,
            }
            if r.reason:
                item["reason"] = r.reason
            if r.status == "failed":
                item["log_tail"] = _tail(r.log)
            tasks.append(item)
    return {
        "workspaces": plan.graph.names,
        "changed": plan.selection.changed,
        "root_changes": plan.selection.global_change,
        "affected": plan.selection.affected,
        "order": plan.order,
        "built": rep.names("built"),
        "cached": rep.names("cached"),
        "skipped": rep.names("skipped"),
        "failed": rep.names("failed"),
        "blocked": rep.names("blocked"),
        "duration_s": round(plan.plan_s + rep.duration_s, 3),
        "dry_run": plan.options.dry_run,
        "warnings": rep.warnings,
        "tasks": tasks,
    }


def failure_message(rep: BuildReport) -> str:
    failed = [rep.results[n] for n in rep.names("failed")]
    first = failed[0]
    last = (_tail(first.log, 1) or "no output").strip()
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    blocked = len(rep.names("blocked"))
    extra = f"; {blocked} dependent workspace(s) not built" if blocked else ""
    return (
        f"build failed: {first.name} ({first.reason}): {last}{more}{extra}: see its log above, fix it "
        "and rerun"
    )


def mermaid(rep: BuildReport) -> str:
    """The plan as a mermaid graph, affected workspaces highlighted, nodes coloured by status."""
    plan = rep.plan
    ids = {n: f"w{i}" for i, n in enumerate(plan.selection.run)}
    lines = ["graph LR"]
    for n in plan.selection.run:
        r = rep.results.get(n)
        label = f"{n}<br/>{r.status if r else 'planned'}"
        lines.append(f'  {ids[n]}["{label}"]')
    for n in plan.selection.run:
        for d in sorted(plan.graph.workspaces[n].internal):
            if d in ids:
                lines.append(f"  {ids[d]} --> {ids[n]}")
    lines.append("  classDef affected stroke:#d97706,stroke-width:3px")
    lines.append("  classDef failed fill:#fecaca")
    lines.append("  classDef cached fill:#dcfce7")
    affected = [ids[n] for n in plan.selection.affected if n in ids]
    if affected:
        lines.append(f"  class {','.join(affected)} affected")
    for status in ("failed", "cached"):
        group = [ids[n] for n in plan.selection.run if rep.results.get(n) and rep.results[n].status == status]
        if group:
            lines.append(f"  class {','.join(group)} {status}")
    return "\n".join(lines)


def timings_rows(rep: BuildReport) -> list[dict[str, Any]]:
    return [
        {
            "workspace": n,
            "status": rep.results[n].status,
            "cache": rep.results[n].cache or "-",
            "seconds": round(rep.results[n].duration_s, 3),
            "hash": rep.plan.hashes[n][:12],
        }
        for lvl in rep.plan.order
        for n in lvl
    ]
