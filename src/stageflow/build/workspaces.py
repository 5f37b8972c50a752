"""Workspace discovery: the package globs of a monorepo (package.json ``workspaces`` in the npm/yarn
list or ``{packages: [...]}`` form, or pnpm-workspace.yaml), each workspace's manifest, and the
internal dependency DAG.

Reads files only; never runs a package manager or writes anything. Every malformed input is a
BadInput naming the file and the fix.
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stageflow.build.model import Workspace
from stageflow.errors import BadInput

DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")
LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock")


@dataclass(frozen=True)
class WorkspaceGraph:
    """The workspaces of one repository and their internal dependency edges."""

    root: Path
    workspaces: Mapping[str, Workspace]  # by name, in discovery order
    globs_source: str  # "package.json" or "pnpm-workspace.yaml"
    manager: str  # npm | pnpm | yarn (detected from lockfile / packageManager)
    root_internal: frozenset[str] = frozenset()  # workspaces the root package.json depends on
    warnings: tuple[str, ...] = ()  # tolerated oddities (a glob matching nothing, a nameless package)

    @property
    def names(self) -> list[str]:
        return list(self.workspaces)

    def dependencies(self, name: str) -> frozenset[str]:
        return self.workspaces[name].internal

    @cached_property
    def dependents_map(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {n: set() for n in self.workspaces}
        for ws in self.workspaces.values():
            for dep in ws.internal:
                out[dep].add(ws.name)
        return out

    def closure(
        self, names: Iterable[str], *, dependents: bool = False, dependencies: bool = False
    ) -> set[str]:
        """``names`` plus their transitive dependents and/or dependencies."""
        result = set(names)
        stack = list(result)
        while stack:
            current = stack.pop()
            nxt: set[str] = set()
            if dependents:
                nxt |= self.dependents_map[current]
            if dependencies:
                nxt |= self.workspaces[current].internal
            for n in nxt - result:
                result.add(n)
                stack.append(n)
        return result

    def levels(self, names: Iterable[str]) -> list[list[str]]:
        """Topological order of ``names`` (edges among them only), as parallel levels."""
        subset = set(names)
        sorter = graphlib.TopologicalSorter({n: self.workspaces[n].internal & subset for n in subset})
        sorter.prepare()
        out: list[list[str]] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            out.append(ready)
            sorter.done(*ready)
        return out

    def owner_of(self, rel_path: str) -> str | None:
        """The workspace whose directory contains ``rel_path`` (deepest wins), or None."""
        by_dir = self._by_dir
        parts = rel_path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            name = by_dir.get("/".join(parts[:i]))
            if name is not None:
                return name
        return None

    @cached_property
    def _by_dir(self) -> dict[str, str]:
        return {ws.rel: ws.name for ws in self.workspaces.values()}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc}): fix the file") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object: fix the file")
    return data


def workspace_globs(root: Path) -> tuple[list[str], str]:
    """The workspace patterns of ``root`` and the file they came from."""
    pnpm = root / "pnpm-workspace.yaml"
    if pnpm.is_file():
        import yaml

        try:
            data = yaml.safe_load(pnpm.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            why = " ".join(str(exc).split())[:200]
            raise BadInput(f"{pnpm}: not valid YAML ({why}): fix the file") from None
        packages = data.get("packages") if isinstance(data, dict) else None
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise BadInput(f"{pnpm}: expected 'packages:' with a list of globs, e.g. - 'apps/*'")
        return packages, "pnpm-workspace.yaml"
    manifest = root / "package.json"
    if not manifest.is_file():
        raise BadInput(
            f"{root}: not a workspaces repository (no package.json or pnpm-workspace.yaml): "
            "pass the monorepo root"
        )
    data = _read_json(manifest)
    spec = data.get("workspaces")
    if isinstance(spec, dict):
        spec = spec.get("packages")
    if spec is None:
        raise BadInput(
            f'{manifest}: not a workspaces repository (no "workspaces" field): add '
            '"workspaces": ["apps/*", "packages/*"] or pass the monorepo root'
        )
    if not isinstance(spec, list) or not all(isinstance(p, str) for p in spec):
        raise BadInput(f'{manifest}: "workspaces" must be a list of globs or {{"packages": [...]}}')
    return spec, "package.json"


def _expand(root: Path, patterns: list[str], source: str, warnings: list[str]) -> list[Path]:
    """Directories holding a package.json matched by the positive patterns minus the ``!`` ones
    (``!packages/legacy``, ``!./packages/legacy``, ``!**/test/**``, as pnpm reads them). A glob
    matching nothing is a warning, as every package manager tolerates it."""
    import pathspec

    negated = [p[1:].strip().removeprefix("./").strip("/") for p in patterns if p.startswith("!")]
    exclude = pathspec.GitIgnoreSpec.from_lines([f"/{n}" for n in negated if n]) if negated else None
    found: dict[str, Path] = {}
    for raw in patterns:
        if raw.startswith("!"):
            continue
        pattern = raw.strip().removeprefix("./").rstrip("/")
        if not pattern or pattern.startswith("/") or ".." in Path(pattern).parts:
            raise BadInput(f"{root / source}: workspace glob '{raw}' must be relative inside the repository")
        matched = 0
        candidates = [root / pattern] if pattern == "." else root.glob(pattern)
        for candidate in sorted(candidates):
            rel = candidate.relative_to(root).as_posix()
            if (
                "node_modules" in candidate.relative_to(root).parts
                or not (candidate / "package.json").is_file()
            ):
                continue
            if exclude is not None and (exclude.match_file(rel + "/") or exclude.match_file(rel)):
                continue
            matched += 1
            found.setdefault(rel, candidate)
        if matched == 0:
            warnings.append(
                f"{root / source}: workspace glob '{raw}' matches no directory with a package.json "
                "(ignored, as the package managers do: fix the glob or remove it)"
            )
    return [found[k] for k in found]


def _alias_target(name: str, spec: str) -> str:
    """The package a dependency entry really names (``"x": "npm:y@^1"`` names y)."""
    for prefix in ("npm:", "workspace:"):
        if spec.startswith(prefix):
            rest = spec[len(prefix) :]
            if rest and not rest[0].isdigit() and rest[0] not in "*^~<>=./":
                at = rest.rfind("@")
                return rest[:at] if at > 0 else rest
    return name


def _path_target(spec: str, directory: Path, by_dir: Mapping[Path, str]) -> str | None:
    """The workspace a path spec points at: ``workspace:../a``, ``file:../a``, ``link:../a``."""
    for prefix in ("workspace:", "file:", "link:"):
        if spec.startswith(prefix):
            rest = spec[len(prefix) :]
            if prefix == "workspace:" and not rest.startswith((".", "/")):
                return None
            target = (directory / rest).resolve() if not Path(rest).is_absolute() else Path(rest).resolve()
            return by_dir.get(target)
    return None


def detect_manager(root: Path, manifest: Mapping[str, Any]) -> str:
    declared = str(manifest.get("packageManager", "")).split("@")[0]
    if declared in {"npm", "pnpm", "yarn"}:
        return declared
    if (root / "pnpm-lock.yaml").is_file() or (root / "pnpm-workspace.yaml").is_file():
        return "pnpm"
    if (root / "yarn.lock").is_file():
        return "yarn"
    return "npm"


def pnpm_auto_install_peers(root: Path) -> bool:
    """pnpm's ``auto-install-peers`` from the root .npmrc (default true since pnpm 8)."""
    try:
        lines = (root / ".npmrc").read_text(encoding="utf-8").splitlines()
    except OSError:
        return True
    value = True
    for line in lines:
        key, sep, val = line.partition("=")
        if sep and key.strip() == "auto-install-peers":
            value = val.strip().lower() not in ("false", "0", "")
    return value


def parse_edge(text: str, where: str) -> tuple[str, str]:
    a, sep, b = text.partition("->")
    if not sep or not a.strip() or not b.strip():
        raise BadInput(f'{where} \'{text}\': write an edge as "dependent -> dependency", e.g. "a -> b"')
    return a.strip(), b.strip()


def discover(root: Path, ignore_edges: Iterable[str] = ()) -> WorkspaceGraph:
    """Find the workspaces of the monorepo at ``root`` and check their DAG (a cycle is BadInput).

    Edges are what the package manager links: a dependency naming another workspace in any field
    (``*``, ranges, ``workspace:*``, ``npm:`` aliases) or pointing at one by path (``workspace:../a``,
    ``file:``, ``link:``). A dependency declared only in ``peerDependencies`` with a plain range is an
    edge only where the package manager installs peers (pnpm with ``auto-install-peers``, its default);
    npm and yarn 1 do not link peer ranges. ``ignore_edges`` (``"a -> b"``) removes edges, e.g. to
    break a cycle."""
    root = root.resolve()
    if not root.is_dir():
        raise BadInput(f"{root}: not a directory: pass the monorepo root")
    patterns, source = workspace_globs(root)
    root_manifest = _read_json(root / "package.json") if (root / "package.json").is_file() else {}
    if not [p for p in patterns if not p.startswith("!")]:
        raise BadInput(f"{root / source}: lists no workspace globs: add e.g. 'packages/*'")
    warnings: list[str] = []
    manifests: dict[str, tuple[Path, dict[str, Any]]] = {}
    for directory in _expand(root, patterns, source, warnings):
        manifest_path = directory / "package.json"
        data = _read_json(manifest_path)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            warnings.append(
                f'{manifest_path}: no "name": not a workspace package (skipped): give it a package name'
            )
            continue
        if name in manifests:
            other = manifests[name][0].relative_to(root).as_posix()
            raise BadInput(
                f"duplicate package name '{name}' in {other}/package.json and "
                f"{directory.relative_to(root).as_posix()}/package.json: rename one"
            )
        manifests[name] = (directory, data)
    manager = detect_manager(root, root_manifest)
    peers_linked = manager == "pnpm" and pnpm_auto_install_peers(root)
    by_dir = {directory.resolve(): name for name, (directory, _) in manifests.items()}
    ignored = {parse_edge(e, "[build] ignore_edges") for e in ignore_edges}

    def edges(name: str, directory: Path, data: Mapping[str, Any]) -> tuple[set[str], dict[str, str]]:
        internal: set[str] = set()
        external: dict[str, str] = {}
        for fld in DEPENDENCY_FIELDS:
            deps = data.get(fld) or {}
            if not isinstance(deps, dict):
                raise BadInput(f'{directory / "package.json"}: "{fld}" must be an object')
            for dep, spec in deps.items():
                spec = str(spec)
                target = _path_target(spec, directory, by_dir) or _alias_target(dep, spec)
                if target in manifests and target != name:
                    peer_only = fld == "peerDependencies" and not any(
                        dep in (data.get(f) or {}) for f in DEPENDENCY_FIELDS if f != fld
                    )
                    if peer_only and not spec.startswith("workspace:") and not peers_linked:
                        continue
                    internal.add(target)
                elif target != name:
                    external.setdefault(dep, spec)
        return internal, external

    workspaces: dict[str, Workspace] = {}
    for name, (directory, data) in manifests.items():
        internal, external = edges(name, directory, data)
        internal -= {b for a, b in ignored if a == name}
        scripts = data.get("scripts") or {}
        workspaces[name] = Workspace(
            name=name,
            rel=directory.relative_to(root).as_posix(),
            path=directory,
            version=str(data.get("version", "")),
            scripts={k: str(v) for k, v in scripts.items()} if isinstance(scripts, dict) else {},
            internal=frozenset(internal),
            external=external,
            manifest=data,
        )
    for a, b in sorted(ignored):
        if a not in manifests or b not in manifests:
            missing = a if a not in manifests else b
            raise BadInput(f"[build] ignore_edges '{a} -> {b}': no workspace '{missing}': fix or remove it")
    root_internal, _ = edges("//", root, root_manifest)
    graph = WorkspaceGraph(root, workspaces, source, manager, frozenset(root_internal), tuple(warnings))
    check_acyclic(graph)
    return graph


def check_acyclic(graph: WorkspaceGraph) -> None:
    sorter = graphlib.TopologicalSorter({n: ws.internal for n, ws in graph.workspaces.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))  # graphlib lists a cycle against the edge direction
        raise BadInput(
            f"dependency cycle between workspaces: {' -> '.join(cycle)}: remove one of these "
            f'dependencies from its package.json, or break it with [build] ignore_edges = ["{cycle[0]} -> '
            f'{cycle[1]}"] in stageflow.toml'
        ) from None
