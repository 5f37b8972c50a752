"""Contracts of the deploy family: shipping a change set to a target and acting on it afterwards.

Protocols: :class:`Transport` (copies the changed paths), :class:`DeployHook` (runs after a transfer:
restart an app, write a file, probe a URL), and :class:`DeployTarget` (what a hook may do on the
target; the engine's local and ssh targets satisfy it). Data: :class:`ChangeSet` (what a transport
ships), :class:`TransferStats` (what it answers), :class:`DeployContext` (what a hook is given) and
:class:`HookOutcome` (what it answers).

Lifecycle: a backend MAY define ``preflight(self) -> None`` (raise a stageflow error, e.g.
:class:`stageflow.errors.Refused`, to refuse before anything is written) and ``close(self) -> None``;
see :func:`stageflow.contracts.preflight` / :func:`stageflow.contracts.close`. Not required members.

Bottom floor: standard library only. A hook never logs secrets: its ``detail`` is what it chose to
report.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "ChangeSet",
    "DeployContext",
    "DeployHook",
    "DeployTarget",
    "HookOutcome",
    "TransferStats",
    "Transport",
]


@dataclass
class ChangeSet:
    """Paths (relative to the source root, POSIX) to add, modify and delete on the target."""

    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Directories (no trailing slash) to create (new, or new permissions) and to remove when empty.
    #: Transports never see them: the engine makes and removes them around the transfer.
    dirs: list[str] = field(default_factory=list)
    gone_dirs: list[str] = field(default_factory=list)
    bytes_to_send: int = 0
    #: Rewrite every path in ``to_send`` even when size and mtime on the target match (a
    #: ``sync --verify --checksum`` repair); rsync's quick check would skip them.
    ignore_times: bool = False
    #: Called by a transport after each path it sent (path, bytes); set by the caller for progress bars.
    progress: Callable[[str, int], None] | None = field(default=None, repr=False, compare=False)

    @property
    def to_send(self) -> list[str]:
        return sorted(self.added + self.modified)

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.deleted or self.dirs or self.gone_dirs)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "modified": self.modified, "deleted": self.deleted}


@dataclass(frozen=True)
class TransferStats:
    """What a transport did: files written, bytes sent, paths deleted."""

    files: int = 0
    bytes: int = 0
    deleted: int = 0


@runtime_checkable
class DeployTarget(Protocol):
    """What a hook may do on the deploy target; ``rel`` paths are relative to the target root."""

    def read_text(self, rel: str) -> str | None: ...
    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None: ...
    def run(
        self,
        command: str,
        cwd_rel: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        inherit_env: bool = True,
    ) -> subprocess.CompletedProcess[str]: ...


def _no_log(message: str) -> None:
    """The default :attr:`DeployContext.log`: drop the line."""


@dataclass
class DeployContext:
    """What a hook may act on. ``directory`` is the deployed tree relative to the target root
    ("" in place, "current" in releases mode)."""

    target: DeployTarget
    directory: str
    source: Path
    environment: str
    role: str
    release: str | None
    changes: ChangeSet
    log: Callable[[str], None] = field(default=_no_log)

    def path(self, rel: str) -> str:
        """A path relative to the deployed tree, relative to the target root."""
        return f"{self.directory}/{rel}" if self.directory else rel


@dataclass(frozen=True)
class HookOutcome:
    """A hook's answer. ``status``: ok | failed | skipped | planned."""

    name: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@runtime_checkable
class Transport(Protocol):
    """Ships ``changes.to_send`` from ``source`` to ``dest`` (a path or ``host:/path``) and deletes
    ``changes.deleted`` there; calls ``changes.progress`` when set. Raises a stageflow error (nothing
    half-renamed) when it cannot."""

    def send(self, source: Path, dest: str, changes: ChangeSet) -> TransferStats: ...


@runtime_checkable
class DeployHook(Protocol):
    """Runs after a transfer. A failure is a ``HookOutcome`` with status "failed" or a raised
    stageflow error; either fails the deploy. (The runner also accepts a plain string or None from
    older hooks, read as "ok" with that detail.)

    Optional, not part of the runtime check: ``preflight(context)`` with a
    :class:`stageflow.sync.hooks.PreflightContext` (source, environment, profile, config,
    ``other_apps()``), called by the safety net before the target is opened; a ``Refused`` it raises
    stops the sync with exit 3 (the pm2 hook's role guard)."""

    def run(self, context: DeployContext) -> HookOutcome: ...
