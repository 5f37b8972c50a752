"""Selection: which workspaces a build covers. Changed files -> owning workspaces -> plus transitive
dependents; root-level inputs affect all; Turborepo-style ``--filter`` and configured roles narrow
the set; the dependencies of what is selected are pulled in so their outputs are present.

Pure functions over a WorkspaceGraph; never runs git or touches the disk.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stageflow.build.config import RoleConfig
from stageflow.build.workspaces import LOCKFILES, WorkspaceGraph
from stageflow.errors import BadInput

ROOT_INPUTS = ("package.json", "pnpm-workspace.yaml", *LOCKFILES)


@dataclass(frozen=True)
class Selection:
    """``affected``: workspaces chosen by changes/filters/role; ``run``: those plus their dependencies."""

    changed: list[str]
    affected: list[str]
    run: list[str]
    global_change: list[str] = field(default_factory=list)  # root-level inputs that changed


def is_root_input(path: str, global_inputs: Sequence[str]) -> bool:
    if path in ROOT_INPUTS:
        return True
    if not global_inputs:
        return False
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(global_inputs).match_file(path)


def affected_by(
    graph: WorkspaceGraph, changed: Sequence[str], global_inputs: Sequence[str]
) -> tuple[set[str], list[str]]:
    """Workspaces affected by ``changed`` paths (owners plus transitive dependents), and the root-level
    inputs among the paths (any of which affects every workspace)."""
    root_hits = [p for p in changed if graph.owner_of(p) is None and is_root_input(p, global_inputs)]
    if root_hits:
        return set(graph.names), root_hits
    owners = {o for p in changed if (o := graph.owner_of(p)) is not None}
    return graph.closure(owners, dependents=True), []


def _match_names(graph: WorkspaceGraph, pattern: str, flag: str) -> set[str]:
    names = {n for n in graph.names if fnmatch.fnmatchcase(n, pattern)}
    if not names:
        # also accept a directory (``apps/web``, ``./apps/*``) as Turborepo does
        rel = pattern.removeprefix("./").rstrip("/")
        names = {ws.name for ws in graph.workspaces.values() if fnmatch.fnmatchcase(ws.rel, rel)}
    if not names:
        raise BadInput(
            f"{flag} '{pattern}': no workspace has that name or directory (known: "
            f"{', '.join(sorted(graph.names))})"
        )
    return names


def apply_filter(graph: WorkspaceGraph, expr: str) -> set[str]:
    """One Turborepo filter: ``NAME``, ``NAME...`` (with dependents), ``...NAME`` (with dependencies);
    NAME may be a glob (``@o4o/*``) or a workspace directory."""
    text = expr.strip()
    with_deps = text.startswith("...")
    with_dependents = text.endswith("...") and len(text) > 3
    core = text.removeprefix("...") if with_deps else text
    core = core.removesuffix("...") if with_dependents else core
    if not core:
        raise BadInput(f"--filter '{expr}': empty name: use NAME, NAME... or ...NAME")
    names = _match_names(graph, core, "--filter")
    return graph.closure(names, dependents=with_dependents, dependencies=with_deps)


def role_members(graph: WorkspaceGraph, roles: Mapping[str, RoleConfig], role: str) -> set[str]:
    if role not in roles:
        known = ", ".join(sorted(roles)) or "none configured"
        raise BadInput(
            f"--role '{role}': unknown role (known: {known}): add [build.roles.{role}] "
            "workspaces = [...] to stageflow.toml"
        )
    out: set[str] = set()
    for pattern in roles[role].workspaces:
        out |= _match_names(graph, pattern, f"[build.roles.{role}] workspace")
    return out


def select(
    graph: WorkspaceGraph,
    changed: Sequence[str] | None,
    *,
    filters: Sequence[str] = (),
    role: str | None = None,
    roles: Mapping[str, RoleConfig] | None = None,
    global_inputs: Sequence[str] = (),
) -> Selection:
    """Combine changes (None: no --base, every workspace is a candidate), filters and role."""
    global_change: list[str] = []
    if changed is None:
        candidates = set(graph.names)
    else:
        candidates, global_change = affected_by(graph, changed, global_inputs)
    if filters:
        picked: set[str] = set()
        for expr in filters:
            picked |= apply_filter(graph, expr)
        candidates &= picked
    if role is not None:
        candidates &= graph.closure(role_members(graph, roles or {}, role), dependencies=True)
    affected = [n for n in graph.names if n in candidates]
    run_set = graph.closure(candidates, dependencies=True)
    return Selection(
        changed=list(changed or []),
        affected=affected,
        run=[n for n in graph.names if n in run_set],
        global_change=global_change,
    )
