"""Task hashing: a workspace's task hash covers its files (git-tracked plus untracked-not-ignored,
outputs excluded), its internal dependencies' task hashes, its external dependencies' lockfile
entries (:class:`Lockfile`), the task's commands, declared env vars, the node version and the
root-level inputs (the root package.json's build fields, not its scripts).

Reads files and asks git/node; never writes outside ``<repo>/.stageflow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from stageflow.build.workspaces import LOCKFILES, WorkspaceGraph
from stageflow.errors import BadInput

HASH_FORMAT = "stageflow-build-2"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def node_version(state_dir: Path | None = None, *, remember: bool = True) -> str:
    """``node --version``, remembered per node binary (path, size, mtime) under ``state_dir``
    (read there always, written only with ``remember``)."""
    node = shutil.which("node")
    if node is None:
        raise BadInput("node is not on PATH: install Node.js (v18 or later) to build workspaces")
    st = os.stat(node)
    key = f"{os.path.realpath(node)}:{st.st_size}:{st.st_mtime_ns}"
    memo = state_dir / "node-version.json" if state_dir else None
    if memo is not None:
        try:
            data = json.loads(memo.read_text())
            if data.get("key") == key:
                return str(data["version"])
        except (OSError, ValueError, KeyError):
            pass
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if memo is not None and remember:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "version": version}))
            os.replace(tmp, memo)
        except OSError:
            pass
    return version


#: Root package.json fields that change how every workspace installs or builds; the others (scripts,
#: name, version, description, ...) are not part of any workspace's hash. Root dependencies count
#: through their resolved lockfile entries too.
ROOT_BUILD_FIELDS = (
    "packageManager",
    "engines",
    "type",
    "workspaces",
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "overrides",
    "resolutions",
    "pnpm",
)


def _yaml_load(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


class Lockfile:
    """Resolved external dependency entries, per workspace, from the repository's lockfile:
    npm ``package-lock.json``/``npm-shrinkwrap.json`` v2/v3 (``packages``, node's lookup),
    ``pnpm-lock.yaml`` v5-v9 (``importers`` then the reachable ``packages``/``snapshots``) and
    ``yarn.lock`` v1 (parsed with the ``yarnlock`` library) or berry (YAML). A task hash includes
    only the entries its own external dependencies reach, as turbo does, so bumping one dependency
    changes only the workspaces that (transitively) use it."""

    def __init__(self, root: Path):
        self.kind = ""
        self.path: Path | None = None
        self.packages: dict[str, Mapping[str, Any]] = {}  # npm
        self.pnpm: dict[str, Any] = {}
        self.yarn: dict[str, Mapping[str, Any]] = {}
        for name in LOCKFILES:
            path = root / name
            if path.is_file():
                self.path = path
                self._load(path)
                break

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot be read ({exc}): fix or regenerate it") from None
        name = path.name
        try:
            if name in {"package-lock.json", "npm-shrinkwrap.json"}:
                self.kind = "npm"
                self.packages = json.loads(text).get("packages") or {}
            elif name == "pnpm-lock.yaml":
                self.kind = "pnpm"
                self.pnpm = _yaml_load(text) or {}
            elif "__metadata:" in text:
                self.kind = "yarn-berry"
                for key, entry in (_yaml_load(text) or {}).items():
                    if key != "__metadata" and isinstance(entry, dict):
                        for descriptor in str(key).split(","):
                            self.yarn[descriptor.strip()] = entry
            else:
                from yarnlock import yarnlock_parse

                self.kind = "yarn"
                self.yarn = cast(dict[str, Mapping[str, Any]], yarnlock_parse(text))  # TypedDict values
        except Exception as exc:  # noqa: BLE001 - any parser failure is the same bad input
            fix = {"npm": "npm install", "pnpm": "pnpm install"}.get(self.kind, "yarn install")
            detail = " ".join(str(exc).split())[:200]  # one line
            raise BadInput(
                f"{path}: not a lockfile stageflow can read ({detail}): regenerate it with `{fix}`"
            ) from None
        if not isinstance(self.packages, dict) or not isinstance(self.pnpm, dict):
            raise BadInput(f"{path}: unexpected structure: regenerate it")

    # ---------------------------------------------------------------------------- npm
    def _resolve(self, name: str, where: str) -> str | None:
        """Node's lookup: ``<where>/node_modules/<name>``, then each parent up to the root."""
        base = where
        while True:
            key = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
            if key in self.packages:
                return key
            if not base:
                return None
            if "node_modules/" in base:
                base = base[: base.rfind("node_modules/")].rstrip("/")
            else:
                base = base.rpartition("/")[0]

    def _npm(self, ws_rel: str, deps: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        stack = [(d, "" if ws_rel == "." else ws_rel) for d in deps]
        while stack:
            name, where = stack.pop()
            key = self._resolve(name, where)
            if key is None or key in out:
                continue
            entry = self.packages[key]
            if entry.get("link"):  # a workspace symlink, covered by its own hash
                continue
            out[key] = f"{entry.get('version', '')}|{entry.get('integrity', entry.get('resolved', ''))}"
            for field in ("dependencies", "optionalDependencies", "peerDependencies"):
                stack.extend((d, key) for d in (entry.get(field) or {}))
        return out

    # ---------------------------------------------------------------------------- pnpm
    def _pnpm_key(self, name: str, version: str) -> str | None:
        packages = self.pnpm.get("packages") or {}
        snapshots = self.pnpm.get("snapshots") or {}
        if version.startswith(("link:", "workspace:")):
            return None
        alias = not version[:1].isdigit() and "@" in version[1:]
        plain = version if alias else f"{name}@{version}"
        for key in (plain, f"/{plain}", f"/{name}/{version}", version):
            if key in snapshots or key in packages:
                return key
        return None

    def _pnpm(self, ws_rel: str) -> dict[str, str]:
        importers = self.pnpm.get("importers")
        if importers is None and ws_rel == ".":  # a single-project lockfile (v5 without importers)
            importers = {".": self.pnpm}
        importer = (importers or {}).get(ws_rel) or {}
        packages = self.pnpm.get("packages") or {}
        snapshots = self.pnpm.get("snapshots") or {}
        stack: list[tuple[str, str]] = []
        for field in ("dependencies", "devDependencies", "optionalDependencies"):
            for dep, ref in (importer.get(field) or {}).items():
                stack.append((dep, str(ref.get("version", "")) if isinstance(ref, dict) else str(ref)))
        out: dict[str, str] = {}
        while stack:
            name, version = stack.pop()
            key = self._pnpm_key(name, version)
            if key is None or key in out:
                continue
            snap = snapshots.get(key) or packages.get(key) or {}
            meta = packages.get(key) or packages.get(key.split("(")[0]) or {}
            resolution = meta.get("resolution") or {}
            out[key] = str(resolution.get("integrity") or resolution.get("tarball") or resolution)
            for field in ("dependencies", "optionalDependencies"):
                stack.extend((d, str(v)) for d, v in (snap.get(field) or {}).items())
        return out

    # ---------------------------------------------------------------------------- yarn
    def _yarn_entry(self, name: str, spec: str) -> tuple[str, Mapping[str, Any]] | None:
        for key in (f"{name}@{spec}", f"{name}@npm:{spec}"):
            entry = self.yarn.get(key)
            if entry is not None:
                return key, entry
        return None

    def _yarn(self, deps: Mapping[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        stack = list(deps.items())
        seen: set[str] = set()
        while stack:
            name, spec = stack.pop()
            found = self._yarn_entry(name, spec)
            if found is None or found[0] in seen:
                continue
            key, entry = found
            seen.add(key)
            resolved = entry.get("integrity") or entry.get("checksum") or entry.get("resolved") or ""
            out[f"{name}@{entry.get('version', '')}"] = str(resolved)
            for field in ("dependencies", "optionalDependencies"):
                stack.extend((d, str(v)) for d, v in (entry.get(field) or {}).items())
        return out

    def entries(self, ws_rel: str, deps: Mapping[str, str]) -> dict[str, str]:
        """Resolved version/integrity of ``deps`` (name -> spec, as in package.json) and of their
        transitive dependencies, as the lockfile pins them for the workspace at ``ws_rel``
        (``.`` for the root)."""
        if self.kind == "npm":
            return self._npm(ws_rel, deps)
        if self.kind == "pnpm":
            return self._pnpm(ws_rel)
        if self.kind in ("yarn", "yarn-berry"):
            return self._yarn(deps)
        return {}


def root_build_fields(root: Path) -> dict[str, Any]:
    """The root package.json fields in :data:`ROOT_BUILD_FIELDS` (no scripts, name, version...)."""
    try:
        manifest = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    return {k: manifest[k] for k in ROOT_BUILD_FIELDS if k in manifest}


def global_hash(
    root: Path,
    files: Mapping[str, str],
    global_inputs: Sequence[str],
    lock: Lockfile,
    env: Mapping[str, str],
    node: str,
) -> str:
    """Hash of what affects every workspace: the root package.json's build fields and its own
    dependencies' lockfile entries, pnpm-workspace.yaml, the global inputs, declared env vars and the
    node version. Neither a whole lockfile nor the root scripts are in it."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(global_inputs) if global_inputs else None
    picked = {
        p: i
        for p, i in files.items()
        if p == "pnpm-workspace.yaml" or (spec is not None and p != "package.json" and spec.match_file(p))
    }
    manifest = root_build_fields(root)
    root_deps: dict[str, str] = {}
    for fld in ("dependencies", "devDependencies", "optionalDependencies"):
        value = manifest.get(fld)
        if isinstance(value, dict):
            root_deps.update({k: str(v) for k, v in value.items()})
    return _digest(
        {
            "format": HASH_FORMAT,
            "files": picked,
            "root": manifest,
            "root_lock": lock.entries(".", root_deps),
            "env": dict(env),
            "node": node,
        }
    )


def task_hashes(
    graph: WorkspaceGraph,
    names: Sequence[str],
    files: Mapping[str, str],
    outputs: Mapping[str, Sequence[str]],
    commands: Mapping[str, Sequence[str]],
    lock: Lockfile,
    global_digest: str,
    task: str,
) -> dict[str, str]:
    """Task hash of each of ``names`` (and, transitively, of their dependencies), in dependency order."""
    import pathspec

    wanted = graph.closure(names, dependencies=True)
    by_ws: dict[str, dict[str, str]] = {n: {} for n in wanted}
    for path, oid in files.items():
        owner = graph.owner_of(path)
        if owner in by_ws:
            rel = path[len(graph.workspaces[owner].rel) + 1 :]
            if "node_modules/" not in rel and not rel.startswith(".stageflow/"):
                by_ws[owner][rel] = oid
    hashes: dict[str, str] = {}
    for level in graph.levels(wanted):
        for name in level:
            ws = graph.workspaces[name]
            out_spec = pathspec.GitIgnoreSpec.from_lines(_anchored(outputs.get(name, ())))
            ws_files = {p: i for p, i in by_ws[name].items() if not out_spec.match_file(p)}
            hashes[name] = _digest(
                {
                    "global": global_digest,
                    "name": name,
                    "task": task,
                    "files": ws_files,
                    "deps": {d: hashes[d] for d in sorted(ws.internal)},
                    "lock": lock.entries(ws.rel, ws.external),
                    "commands": list(commands.get(name, ())),
                    "outputs": list(outputs.get(name, ())),
                }
            )
    return hashes


def _anchored(patterns: Iterable[str]) -> list[str]:
    return [p if p.startswith(("/", "!")) else "/" + p for p in patterns]
