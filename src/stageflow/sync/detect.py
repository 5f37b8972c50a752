"""Change detection: which paths of the source a sync looks at, and what changed among them.

Three strategies with one interface (:class:`Strategy`): ``why_not(inputs)`` says why it cannot answer
this time (None: it can), ``detect(inputs)`` scans and diffs. :func:`detect` tries them in order:

1. the watch (watchman, or the sync server's inotify watch, asked in ``prepare`` before anything is
   stat()ed): only the paths it saw change since the recorded clock;
2. git: only the paths ``git status`` and the commits since the last sync name, plus the
   directories it reports whole;
3. the walk: every file, against the baseline; it always answers.

An accelerator needs a local manifest that is the target's, from the same source and rules; the
reason the last one tried gave is the sync's ``accelerator_reason`` when the tree was walked.
Advisory only: whatever a strategy names is stat()ed and hashed as the walk would, so a wrong answer
costs time, never a wrong deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stageflow.sync import gitscan, watch
from stageflow.sync.localstate import LocalState
from stageflow.sync.manifest import (
    ChangeSet,
    Manifest,
    ScanResult,
    apply_delta,
    diff,
    scan,
    scan_paths,
    with_parent_dirs,
)
from stageflow.sync.rules import SelectionRules


@dataclass
class Inputs:
    """What every strategy may look at."""

    source: Path
    rules: SelectionRules
    local: LocalState | None  # the local manifest cache of this target
    local_ok: bool  # the local copy is the target's manifest
    pending: set[str]  # paths an interrupted in-place sync left pending: always looked at
    from_target: Manifest | None  # the target's manifest as read from it, when the local copy is not


@dataclass
class Changes:
    """What a strategy found: the scan of what it looked at, the change set, and the manifest delta."""

    scanned: ScanResult
    changes: ChangeSet
    sets: Manifest  # entries new or different from the target's manifest
    deleted: list[str]  # entries the target's manifest has and the new one has not
    unmatched: list[str]  # include patterns that select nothing
    full: Manifest | None = None  # the whole new manifest, when a walk built it


@dataclass
class Detection:
    """The answer of :func:`detect`: the changes, who found them, and the bookkeeping to keep."""

    found: Changes
    accelerator: str  # "walk", "git", "watchman" or "inotify"
    reason: str | None  # why the whole tree was walked
    #: Saved with the local copy for the next sync's accelerators (git commit, watch clock).
    meta: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def why_not(self, inputs: Inputs) -> str | None:
        """None when this strategy may answer this sync, else why not."""

    def detect(self, inputs: Inputs) -> Changes:
        """Scan and diff. May raise :class:`gitscan.GitUnavailable` (then the walk answers)."""


def why_not_incremental(inputs: Inputs) -> str | None:
    """None when the local manifest is a baseline an accelerator may diff against, else why not."""
    local, local_ok = inputs.local, inputs.local_ok
    if local is None or not local_ok:
        return "no local manifest matching the target's (first sync from here, or the target changed)"
    meta = local.meta
    if meta.get("source") != str(inputs.source):
        return "the last sync came from another source directory"
    if meta.get("rules") != inputs.rules.digest:
        return "the include/exclude/protect rules changed since the last sync"
    return None


def _outermost(dirs: set[str]) -> set[str]:
    ordered = sorted(dirs, key=len)
    kept: list[str] = []
    for d in ordered:
        if not any(d.startswith(k + "/") for k in kept):
            kept.append(d)
    return set(kept)


def _under(path: str, roots: set[str]) -> bool:
    return any(path.startswith(r + "/") for r in roots)


def _merge(into: ScanResult, other: ScanResult) -> None:
    into.files.update(other.files)
    into.files_scanned += other.files_scanned
    into.excluded += other.excluded
    into.hashed += other.hashed
    into.skipped_links = sorted(set(into.skipped_links) | set(other.skipped_links))


def _scan_named(
    inputs: Inputs, local: LocalState, candidates: set[str], roots: set[str]
) -> tuple[ScanResult, Manifest]:
    """Stat/hash ``candidates`` and walk ``roots`` whole; returns that scan and their old entries."""
    previous = local.get(candidates)
    for root in roots:
        previous.update(local.under(root))
    scanned = scan_paths(inputs.source, inputs.rules, candidates, previous)
    for root in sorted(roots):
        _merge(scanned, scan(inputs.source, inputs.rules, previous, under=root))
    return scanned, previous


def _incremental(
    inputs: Inputs,
    local: LocalState,
    scanned: ScanResult,
    previous: Manifest,
    roots: set[str],
    candidates: set[str],
) -> Changes:
    """The delta of an accelerated scan against the local manifest (what was not looked at is
    unchanged), keeping the last sync's skipped links and unmatched includes where still true."""
    rules, old = inputs.rules, local.meta
    kept_links = [p for p in old.get("skipped_links", []) if p not in candidates and not _under(p, roots)]
    scanned.skipped_links = sorted(set(kept_links) | set(scanned.skipped_links))
    changes = diff(previous, scanned.files, inputs.pending)
    sets = {p: e for p, e in scanned.files.items() if previous.get(p) != e}
    deleted = [p for p in previous if p not in scanned.files]
    unmatched: Any = old.get("unmatched")
    if rules.include_patterns and (deleted or not isinstance(unmatched, list)):
        unmatched = rules.unmatched_includes(list(apply_delta(local.all(), sets, deleted)))
    elif rules.include_patterns:
        still = set(rules.unmatched_includes(list(sets)))
        unmatched = [u for u in unmatched if u in still]
    else:
        unmatched = []
    return Changes(scanned, changes, sets, deleted, unmatched)


class WatchStrategy:
    """The watchman / inotify accelerator: stat/hash only the paths the watch says changed since the
    last sync (and those an interrupted sync left pending), and walk the directories it names whole
    (created, moved in or away)."""

    def __init__(self, view: watch.WatchView):
        self.view = view
        self.name = view.key

    def why_not(self, inputs: Inputs) -> str | None:
        return why_not_incremental(inputs) or (
            None if self.view.changed is not None else self.view.reason or "no answer from the watch"
        )

    def detect(self, inputs: Inputs) -> Changes:
        view, local, rules = self.view, inputs.local, inputs.rules
        assert view.changed is not None and local is not None
        roots = _outermost({d for d in view.dirs if not rules.skip_tree(d)})
        candidates = {
            c
            for c in with_parent_dirs(view.changed | inputs.pending)
            if not _under(c, roots) and c.rstrip("/") not in roots
        }
        scanned, previous = _scan_named(inputs, local, candidates, roots)
        return _incremental(inputs, local, scanned, previous, roots, candidates)


class GitStrategy:
    """The git accelerator: stat/hash only the paths git (or the last sync) names, and walk only the
    directories git reports whole. ``status`` waits for ``git status`` (started before the safety
    net) and gives its answer, or why there is none; :attr:`view` keeps that answer."""

    name = "git"

    def __init__(self, status: Callable[[], tuple[gitscan.GitView | None, str | None]]):
        self._status = status
        self.view: gitscan.GitView | None = None

    def why_not(self, inputs: Inputs) -> str | None:
        self.view, reason = self._status()  # git status before any stat: a later change is seen next time
        if reason:
            return reason
        if self.view is None:
            return "git unavailable"
        local = inputs.local
        if local is not None and inputs.local_ok and not local.meta.get("commit"):
            return "the last sync recorded no git commit"
        return why_not_incremental(inputs)

    def detect(self, inputs: Inputs) -> Changes:
        view, local, rules = self.view, inputs.local, inputs.rules
        assert view is not None and local is not None
        meta = local.meta
        between = gitscan.changed_between(inputs.source, str(meta["commit"]), view.head)
        roots = _outermost({d for d in view.dirs if not rules.skip_tree(d)} | set(meta.get("walk_roots", [])))
        candidates = view.changed | view.ignored | between | set(meta.get("dirty", [])) | inputs.pending
        candidates = with_parent_dirs(candidates)
        candidates = {c for c in candidates if not _under(c, roots) and c not in roots}
        scanned, previous = _scan_named(inputs, local, candidates, roots)
        return _incremental(inputs, local, scanned, previous, roots, candidates)


class WalkStrategy:
    """Every file of the source, against the local manifest when it is the target's, else against
    the manifest read from the target (none known: everything is new)."""

    name = "walk"

    def why_not(self, inputs: Inputs) -> str | None:
        return None

    def detect(self, inputs: Inputs) -> Changes:
        local = inputs.local
        previous = local.all() if inputs.local_ok and local is not None else (inputs.from_target or {})
        scanned = scan(inputs.source, inputs.rules, previous)
        full = scanned.files
        changes = diff(previous, full, inputs.pending)
        sets = {p: e for p, e in full.items() if previous.get(p) != e}
        deleted = [p for p in previous if p not in full]
        unmatched = inputs.rules.unmatched_includes(list(full))
        return Changes(scanned, changes, sets, deleted, unmatched, full)


def detect(
    inputs: Inputs,
    watched: watch.WatchView | None,
    git_status: Callable[[], tuple[gitscan.GitView | None, str | None]],
) -> Detection:
    """Try the watch (when ``watched``), then git, then walk. ``git_status`` is asked only when the
    watch cannot answer."""
    git = GitStrategy(git_status)
    strategies: list[Strategy] = [WatchStrategy(watched)] if watched is not None else []
    strategies.append(git)
    chosen: Strategy = WalkStrategy()
    reason: str | None = None
    for strategy in strategies:
        reason = strategy.why_not(inputs)
        if reason is None:
            chosen = strategy
            break
    found: Changes | None = None
    if reason is None and inputs.local is not None:
        try:
            found = chosen.detect(inputs)
        except gitscan.GitUnavailable as exc:
            reason = str(exc)
    if found is None:
        found = WalkStrategy().detect(inputs)
    used_watch = isinstance(chosen, WatchStrategy)
    meta = _bookkeeping(inputs, found, git.view, watched, used_watch)
    accelerator = "walk" if reason else chosen.name
    return Detection(found, accelerator, reason, meta)


def _bookkeeping(
    inputs: Inputs,
    found: Changes,
    view: gitscan.GitView | None,
    watched: watch.WatchView | None,
    used_watch: bool,
) -> dict[str, Any]:
    """What the next sync's accelerators need: git's commit, dirty paths and whole directories, and
    the watch's clock."""
    rules, local = inputs.rules, inputs.local
    meta: dict[str, Any] = {}
    if view is not None:
        meta.update(
            commit=view.head,
            dirty=sorted(p for p in view.changed | view.ignored if not rules.skip_path(p)),
            walk_roots=sorted(d for d in view.dirs if not rules.skip_tree(d)),
        )
    elif used_watch and local is not None and local.meta.get("commit"):
        # Keep the git bookkeeping valid for a later git-accelerated sync (watchman gone): every
        # path shipped since the recorded commit's sync joins "dirty", so a file changed and then
        # reverted to that commit's content is still looked at.
        old = local.meta
        meta.update(
            commit=old["commit"],
            dirty=sorted(set(old.get("dirty", [])) | set(found.sets) | set(found.deleted)),
            walk_roots=old.get("walk_roots", []),
        )
    if watched is not None:
        # Nothing changed: keep the recorded clock, so a no-change sync writes nothing.
        unchanged = used_watch and not watched.changed and not watched.dirs
        recorded = local.meta.get(watched.key) if unchanged and local else None
        meta[watched.key] = recorded if isinstance(recorded, dict) else watched.record()
    return meta
