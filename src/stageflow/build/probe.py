"""Cheap, stdlib-only probes shared by the build engine and the CLI fast path
(:mod:`stageflow.fast.build`): output fingerprints, the memory-limited concurrency, the state file
of a workspace, where the build config comes from, and one digest of every input a task hash reads.

Must never import anything outside the standard library (the fast path's start-up depends on it),
never write anything, and never guess: a probe that cannot tell returns None.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

TYPE_CHECKING = False  # typing and collections.abc cost milliseconds the fast path must not pay
if TYPE_CHECKING:
    from collections.abc import Sequence

#: Root files read whole by discovery and hashing (kept equal to workspaces.LOCKFILES + manifests).
ROOT_FILES = (
    "package.json",
    "pnpm-workspace.yaml",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
)
CONFIG_NAME = "stageflow.toml"
INPUTS_FORMAT = "stageflow-build-inputs-1"


# ----------------------------------------------------------------------------------------- outputs
def expand(ws_path: Path, patterns: Sequence[str]) -> list[Path]:
    """Existing files and directories matching the output patterns (``dist/``, ``*.tsbuildinfo``)."""
    found: list[Path] = []
    for pattern in patterns:
        clean = pattern.strip().strip("/")
        if not clean or ".." in Path(clean).parts:
            continue
        if any(ch in clean for ch in "*?["):
            found.extend(sorted(ws_path.glob(clean)))
        elif (ws_path / clean).exists():
            found.append(ws_path / clean)
    return found


def fingerprint(ws_path: Path, patterns: Sequence[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every output file: cheap evidence that outputs were not touched."""
    out: list[tuple[str, int, int]] = []
    for item in expand(ws_path, patterns):
        paths = [item] if item.is_file() else [Path(d) / f for d, _, fs in os.walk(item) for f in fs]
        for p in paths:
            st = p.lstat()
            out.append((p.relative_to(ws_path).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)


# ----------------------------------------------------------------------------------------- machine
def memory_limited(concurrency: int, memory_mb: int) -> int:
    """``concurrency`` lowered so that concurrency x memory cap fits in available memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {k: v for k, _, v in (line.partition(":") for line in fh)}
        available_mb = int(info["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError, IndexError):
        return concurrency
    return max(1, min(concurrency, available_mb // max(memory_mb, 1)))


def default_concurrency() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def state_file_name(name: str) -> str:
    """The file under ``.stageflow/state/`` recording which hash produced a workspace's outputs
    (every run of characters outside ``[A-Za-z0-9._-]`` becomes one ``_``)."""
    out: list[str] = []
    in_run = False
    for ch in name:
        if ch in _SAFE:
            out.append(ch)
            in_run = False
        elif not in_run:
            out.append("_")
            in_run = True
    return "".join(out) + ".json"


def which(command: str) -> str | None:
    """``shutil.which`` for a bare command name on POSIX, without importing shutil."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", command)
        if os.access(path, os.F_OK | os.X_OK) and not os.path.isdir(path):
            return path
    return None


def node_key() -> str | None:
    """Identity of the ``node`` on PATH (real path, size, mtime): a different node is a different key."""
    node = which("node")
    if node is None:
        return None
    st = os.stat(node)
    return f"{os.path.realpath(node)}:{st.st_size}:{st.st_mtime_ns}"


# ----------------------------------------------------------------------------------------- config
def resolve_config(repo: Path, option: Path | None) -> Path | None | bool:
    """The project file the build command reads, as the command resolves it: ``--config``, else
    ``REPO/stageflow.toml``, else ``$STAGEFLOW_CONFIG``, else ``./stageflow.toml``, else None (defaults).
    False when the command would fail on it (a missing file)."""
    if option is not None:
        return option.resolve() if option.is_file() else False
    if (repo / CONFIG_NAME).is_file():
        return (repo / CONFIG_NAME).resolve()
    env = os.environ.get("STAGEFLOW_CONFIG")
    if env:
        path = Path(env).expanduser()
        return path.resolve() if path.is_file() else False
    here = Path.cwd() / CONFIG_NAME
    return here.resolve() if here.is_file() else None


# ----------------------------------------------------------------------------------------- inputs
def _git(root: Path, *args: str) -> bytes | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _blob(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if not path.is_file():
        return "absent"
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"


def _code_stamp() -> list[str]:
    """The build engine's own source files (size, mtime): a changed engine never trusts old state."""
    here = Path(__file__).resolve().parent
    out = []
    for path in sorted([*here.glob("*.py"), here.parent / "config.py"]):
        st = path.stat()
        out.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def inputs_digest(
    root: Path, config: Path | None, env_vars: Sequence[str], globs: Sequence[str]
) -> str | None:
    """One sha256 over everything a no-flag build's plan reads: the git index and every modified,
    deleted or untracked-not-ignored file's content, the root manifests and lockfiles, the project
    file, the values of ``env_vars``, the node binary, the workspace directories the ``globs`` match
    (with their package.json size and mtime), and the engine's code. None when it cannot be computed
    (not a git repository, git or node missing)."""
    index = _git(root, "ls-files", "-z", "-s")
    if index is None:
        return None
    others = _git(root, "ls-files", "-z", "-t", "-m", "-d", "-o", "--exclude-standard")
    node = node_key()
    if others is None or node is None:
        return None
    h = hashlib.sha256()

    def add(*parts: str) -> None:
        for part in parts:
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    add(INPUTS_FORMAT, str(root), *_code_stamp())
    h.update(index)
    h.update(b"\0\0")
    for entry in others.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        tag, _, rel = entry.partition(" ")
        add(tag, rel, _blob(root / rel) if tag in {"C", "?"} else "")
    for name in ROOT_FILES:
        add(name, _file_digest(root / name))
    add("config", str(config) if config else "", _file_digest(config) if config else "")
    for var in sorted(env_vars):
        value = os.environ.get(var)
        add("env", var, "unset" if value is None else "set", value or "")
    add("node", node)
    for pattern in globs:
        clean = pattern.strip().removeprefix("./").rstrip("/")
        if pattern.startswith("!") or not clean or clean.startswith("/") or ".." in Path(clean).parts:
            add("pattern", pattern)
            continue
        candidates = [root] if clean == "." else sorted(root.glob(clean))
        for candidate in candidates:
            try:
                st = (candidate / "package.json").stat()
            except OSError:
                continue
            add("ws", candidate.relative_to(root).as_posix(), str(st.st_size), str(st.st_mtime_ns))
    return h.hexdigest()
