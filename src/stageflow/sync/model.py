"""The records a sync passes between its steps: the request, the prepared sync (safety net passed,
backends built), the plan (the change set and the manifest delta) and the result the CLI prints
(``--json``) and the flow publishes. Plain data: no step of the sync lives here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.errors import JobFailed
from stageflow.sync import gitscan, watch
from stageflow.sync.hooks import HookOutcome, PlannedHook
from stageflow.sync.localstate import LocalState
from stageflow.sync.manifest import ChangeSet, Manifest, apply_delta
from stageflow.sync.profile import EnvironmentProfile, SyncConfig
from stageflow.sync.rules import SelectionRules
from stageflow.sync.safety import RoleFound
from stageflow.sync.target import LocalTarget, Snapshot, SshTarget


class DeployFailed(JobFailed):
    """A deploy ran and failed (a hook); ``result`` says what happened, including any rollback."""

    def __init__(self, message: str, result: SyncResult):
        super().__init__(message)
        self.result = result


@dataclass
class SyncRequest:
    """One sync to run. ``config`` is the project file's [sync] section, loaded by the caller (the
    engine reads no file: :func:`stageflow.sync.engine.locate` says which one), ``config_file`` where it
    came from (for messages)."""

    source: Path
    environment: str
    config: SyncConfig
    config_file: Path
    target: str | None = None
    dry_run: bool = False
    use_git: bool = True  # False (--no-git): always walk the whole tree
    #: --verify: compare the target's real files with the manifest and repair what drifted.
    verify: bool = False
    #: --checksum (with verify): compare content too, not only type, size, mtime and mode.
    checksum: bool = False


@dataclass
class SyncResult:
    environment: str
    target: str
    role: str
    mode: str
    release: str | None = None
    changes: ChangeSet = field(default_factory=ChangeSet)
    bytes_sent: int = 0
    #: Over ssh: the bytes of the sync's own control traffic (the safety net's request, the lock, the
    #: pending/state/journal writes), which ``bytes_sent`` (the transport's) leaves out.
    control_bytes: int = 0
    files_scanned: int = 0
    excluded: int = 0
    hooks: list[HookOutcome] = field(default_factory=list)
    duration_s: float = 0.0
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    rolled_back_to: str | None = None
    error: str | None = None
    #: "git" / "watchman" / "inotify": only the paths git, watchman or the sync server's inotify
    #: watch (or the last sync) named were examined.
    accelerator: str = "walk"
    accelerator_reason: str | None = None  # why the whole tree was walked
    #: Releases mode: a live release an interrupted sync left with unfinished hooks, and what this
    #: sync did about it ({"release", "action": "finished" | "rolled back", "hooks", "to"}).
    unfinished: dict[str, Any] | None = None
    #: --verify: how the target differed from the manifest before this sync repaired it.
    drift: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "target": self.target,
            "role": self.role,
            "mode": self.mode,
            "release": self.release,
            "changes": self.changes.as_dict(),
            "bytes_sent": self.bytes_sent,
            "files_scanned": self.files_scanned,
            "excluded": self.excluded,
            "hooks": [{"name": h.name, "status": h.status} for h in self.hooks],
            "duration_s": round(self.duration_s, 4),
            "dry_run": self.dry_run,
            "control_bytes": self.control_bytes,
            "warnings": self.warnings,
            "skipped_links": self.skipped_links,
            "rolled_back_to": self.rolled_back_to,
            "error": self.error,
            "accelerator": self.accelerator,
            "accelerator_reason": self.accelerator_reason,
            "unfinished": self.unfinished,
            "drift": self.drift,
        }


@dataclass
class Prepared:
    """A validated sync, safety net passed, backends built; nothing written yet."""

    request: SyncRequest
    source: Path
    config: SyncConfig
    profile: EnvironmentProfile
    target: LocalTarget | SshTarget
    role: RoleFound
    rules: SelectionRules
    transport_name: str
    transport: Any
    hooks: list[PlannedHook]
    started: float
    log: Callable[[str], None]
    #: Read-only answers taken with the safety net (one ssh round trip): pending/state, ``current``.
    snapshot: Snapshot | None = None
    #: ``git status``, started before the safety net so the two overlap (None: --no-git, or watchman
    #: answered).
    git: gitscan.StatusRun | None = None
    #: watchman's or the server's inotify answer (or just its clock), taken before git or the walk
    #: look at the tree.
    watch: watch.WatchView | None = None
    #: The target's local manifest cache, opened to read watchman's recorded clock; the first
    #: :func:`plan` takes it instead of opening it again.
    local: LocalState | None = None


@dataclass
class Plan:
    """A planned sync: the result so far, and the manifest delta from what the target holds."""

    result: SyncResult
    pending: dict[str, Any]
    state: dict[str, Any]
    sets: Manifest  # entries new or different from the target's manifest
    deleted: list[str]  # entries the target's manifest has and the new one has not
    base_id: str | None  # id of the target's manifest (None: unknown, everything is sent)
    full: Manifest | None  # the whole new manifest, when a walk built it
    local: LocalState | None
    local_ok: bool  # the local copy is the target's manifest
    meta: dict[str, Any]  # accelerator bookkeeping saved with the local copy

    def new_manifest(self) -> Manifest:
        if self.full is not None:
            return self.full
        assert self.local is not None
        return apply_delta(self.local.all(), self.sets, self.deleted)
