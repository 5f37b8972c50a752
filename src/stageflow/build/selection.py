"""Selection: which workspaces a build covers. Changed files -> owning workspaces -> plus transitive
dependents; root-level inputs affect all; Turborepo-style ``--filter`` and configured roles narrow
the set; the dependencies of what is selected are pulled in so their outputs are present.

Pure functions over a WorkspaceGraph; git is reached only through the callables passed in.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stageflow.build import filters as turbo_filters
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


def changed_packages(
    graph: WorkspaceGraph, paths: Sequence[str], global_inputs: Sequence[str] = ()
) -> set[str]:
    """Packages with a change among ``paths`` as a ``[ref]`` filter sees them: each path's owner, the
    root package (``//``) for other paths, every package when a root-level input (root package.json,
    turbo.json, a lockfile, ``[build] global_inputs``) changed."""
    if any(
        graph.owner_of(p) is None and (p == "turbo.json" or is_root_input(p, global_inputs)) for p in paths
    ):
        return {*graph.names, turbo_filters.ROOT}
    return {graph.owner_of(p) or turbo_filters.ROOT for p in paths}


def apply_filter(
    graph: WorkspaceGraph,
    expr: str | Sequence[str],
    changed: Callable[[str, str], set[str]] | None = None,
) -> set[str]:
    """Turborepo filters (:mod:`stageflow.build.filters`): the union of the inclusions minus the
    exclusions. ``changed(from_ref, to_ref)`` answers ``[ref]`` selectors."""

    def no_git(from_ref: str, to_ref: str) -> set[str]:
        raise BadInput(f"--filter '[{from_ref}]': git ranges need a git repository")

    exprs = [expr] if isinstance(expr, str) else list(expr)
    resolver = turbo_filters.Resolver(graph, changed or no_git)
    picked = resolver.resolve(exprs)
    for raw in exprs:
        sel = turbo_filters.parse(raw)
        if sel.name and "/" in sel.name and "*" in sel.name and not sel.directory and not sel.from_ref:
            if not resolver._by_name(sel, graph.names) and _dir_matches(graph, sel.name):
                raise BadInput(
                    f"--filter '{raw}': matches no package name but matches directories: "
                    f"write '{{./{sel.name.removeprefix('./')}}}' to select by directory"
                )
    return picked


def _dir_matches(graph: WorkspaceGraph, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(ws.rel, pattern.removeprefix("./")) for ws in graph.workspaces.values())


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
    changed_in: Callable[[str, str], Sequence[str]] | None = None,
) -> Selection:
    """Combine changes (None: no --base, every workspace is a candidate), filters and role.
    ``changed_in(from_ref, to_ref)`` lists the paths changed in a filter's git range."""
    global_change: list[str] = []
    if changed is None:
        candidates = set(graph.names)
    else:
        candidates, global_change = affected_by(graph, changed, global_inputs)
    if filters:

        def packages_in(from_ref: str, to_ref: str) -> set[str]:
            if changed_in is None:
                raise BadInput(f"--filter '[{from_ref}]': git ranges need a git repository")
            return changed_packages(graph, changed_in(from_ref, to_ref), global_inputs)

        candidates &= apply_filter(graph, filters, packages_in)
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
