"""Data that crosses the build stages: workspaces, the tasks handed to a runner, what a runner and a
cache answer, and per-workspace results.

Plain dataclasses only: no I/O, no subprocesses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.errors import StageflowError


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
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


class ProcessTracker:
    """Running child processes of one build, so fail-fast can stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[Any] = set()
        self.cancelled = threading.Event()

    def add(self, proc: Any) -> None:
        with self._lock:
            self._procs.add(proc)
        if self.cancelled.is_set():
            self._kill(proc)

    def discard(self, proc: Any) -> None:
        with self._lock:
            self._procs.discard(proc)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self._kill(proc)

    @staticmethod
    def _kill(proc: Any) -> None:
        import os
        import signal

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


@dataclass
class TaskResult:
    """Outcome for one workspace in a run."""

    name: str
    hash: str
    status: str  # built | cached | skipped | failed | blocked | planned
    duration_s: float = 0.0
    cache: str = ""  # hit | miss | up-to-date | "" (not looked up)
    log: str = ""
    exit_code: int | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
