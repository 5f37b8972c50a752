"""Task hashing: a workspace's task hash covers its files (git-tracked plus untracked-not-ignored,
outputs excluded), its internal dependencies' task hashes, its external dependencies' lockfile
entries, the task's commands, declared env vars, the node version and the root-level inputs.

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
from typing import Any

from stageflow.build.workspaces import LOCKFILES, WorkspaceGraph
from stageflow.errors import BadInput

HASH_FORMAT = "stageflow-build-1"


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


class Lockfile:
    """External dependency entries of an npm lockfile (v2/v3 ``packages`` map); other lockfiles
    (pnpm-lock.yaml, yarn.lock) are hashed whole into the global hash."""

    def __init__(self, root: Path):
        self.packages: dict[str, Mapping[str, Any]] = {}
        self.whole: dict[str, str] = {}
        for name in LOCKFILES:
            path = root / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            if name in {"package-lock.json", "npm-shrinkwrap.json"}:
                try:
                    parsed = json.loads(data)
                    self.packages = parsed.get("packages") or {}
                    continue
                except ValueError:
                    raise BadInput(f"{path}: not valid JSON: regenerate it with `npm install`") from None
            self.whole[name] = hashlib.sha256(data).hexdigest()

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

    def entries(self, ws_rel: str, deps: Iterable[str]) -> dict[str, str]:
        """Resolved version/integrity of ``deps`` and their transitive dependencies."""
        if not self.packages:
            return {}
        out: dict[str, str] = {}
        stack = [(d, ws_rel) for d in deps]
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


def global_hash(
    root: Path,
    files: Mapping[str, str],
    global_inputs: Sequence[str],
    lock: Lockfile,
    env: Mapping[str, str],
    node: str,
) -> str:
    """Hash of what affects every workspace: root package.json, global inputs, whole-file lockfiles
    (non-npm), declared env vars and the node version."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(global_inputs) if global_inputs else None
    picked = {
        p: i
        for p, i in files.items()
        if p in ("package.json", "pnpm-workspace.yaml") or (spec is not None and spec.match_file(p))
    }
    return _digest(
        {"format": HASH_FORMAT, "files": picked, "lock": lock.whole, "env": dict(env), "node": node}
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
