"""Contracts of the build family: running one workspace's task and caching what it produced.

Protocols: :class:`BuildRunner`, :class:`BuildCache`; data: :class:`Workspace`, :class:`BuildTask`
(with its :class:`ProcessTracker`), :class:`BuildOutcome`, :class:`CacheHit`, and the error a cache
raises for an unreadable entry, :class:`CacheEntryCorrupt`.

Optional members the engine uses when present: a cache's ``signature_key`` (bytes, to verify signed
archives) and ``discard(key)`` (drop a corrupt entry). Lifecycle: a backend MAY define
``preflight(self) -> None`` (raise a stageflow error to refuse before any work) and
``close(self) -> None`` (stop warm workers, release connections); see
:func:`stageflow.contracts.preflight` / :func:`stageflow.contracts.close`. None of these are required
members of the Protocols.

Plain data only: no I/O here beyond the tracker signalling its processes. Bottom floor: standard
library and :mod:`stageflow.errors` only.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stageflow.errors import StageflowError

__all__ = [
    "BuildCache",
    "BuildOutcome",
    "BuildRunner",
    "BuildTask",
    "CacheEntryCorrupt",
    "CacheHit",
    "ChildProcess",
    "ProcessTracker",
    "Workspace",
]


@dataclass(frozen=True)
class Workspace:
    """One workspace package: its name as in package.json and its directory relative to the root."""

    name: str
    rel: str  # posix path relative to the repository root
    path: Path
    version: str
    scripts: Mapping[str, str]
    internal: frozenset[str]  # names of workspaces it depends on (any dependency field)
    external: Mapping[str, str]  # other dependencies: name -> version spec
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # package.json


class ChildProcess(Protocol):
    """What a :class:`ProcessTracker` holds: a process group leader's pid (a ``subprocess.Popen``)."""

    @property
    def pid(self) -> int: ...


class ProcessTracker:
    """Running child processes of one build, so fail-fast can stop them all. A runner adds each child
    it starts (started in its own process group) and discards it when it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[ChildProcess] = set()
        self.cancelled = threading.Event()

    def add(self, proc: ChildProcess) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.cancelled.is_set():
            self._kill(proc)

    def discard(self, proc: ChildProcess) -> None:
        with self._lock:
            self._procs.discard(proc)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self._kill(proc)

    @staticmethod
    def _kill(proc: ChildProcess) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class BuildTask:
    """What a build runner is asked to run: ``task`` of one workspace, with its environment."""

    workspace: Workspace
    root: Path
    task: str
    env: dict[str, str]
    tracker: ProcessTracker = field(default_factory=ProcessTracker)
    #: How many builds of this run may be running at once: the concurrency, or fewer when fewer
    #: workspaces are out of date (a runner may keep that many workers warm).
    concurrency: int = 1


@dataclass(frozen=True)
class BuildOutcome:
    """What a runner answers: the exit code (0 ok), the combined log, and how it ran."""

    exit_code: int
    log: str
    duration_s: float
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheHit:
    """A cache fetch that restored outputs; ``log`` is the build's recorded output."""

    log: str


class CacheEntryCorrupt(StageflowError):
    """A cache entry exists but cannot be read; the engine treats it as a miss and reports it."""


@runtime_checkable
class BuildRunner(Protocol):
    """Runs ``task.task`` of ``task.workspace`` (a package-manager script, a compiler) and answers how
    it went; never raises for a failing build (a non-zero ``exit_code`` says it)."""

    def run(self, task: BuildTask) -> BuildOutcome: ...


@runtime_checkable
class BuildCache(Protocol):
    """``fetch`` writes the archive stored under ``key`` to ``dest`` and returns its path, or None on
    a miss (raise :class:`CacheEntryCorrupt` for an unreadable entry); ``store`` packs ``outputs``
    (globs relative to ``root``) with the build's ``log`` under ``key``."""

    def fetch(self, key: str, dest: Path) -> Path | None: ...
    def store(self, key: str, root: Path, outputs: Sequence[str], log: str) -> None: ...
