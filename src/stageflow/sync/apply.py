"""Writing a planned sync to the target, under its lock: in place (a pending journal first, the
transfer, hooks, then the manifest journal line and the state) or as a new release (hard-linked from
the live one, sent, switched to, hooks run, rolled back when one fails). Also the target-side chores
around a transfer: temp files a killed one left, directories deletions emptied or the plan adds."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stageflow.sync import releases
from stageflow.sync.hooks import DeployContext, run_hooks
from stageflow.sync.manifest import (
    ChangeSet,
    Manifest,
    delta_line,
    json_text,
    manifest_id_of_json,
    manifest_to_json,
)
from stageflow.sync.model import DeployFailed, Plan, Prepared, SyncResult
from stageflow.sync.target import Held, LocalTarget, SshTarget

logger = logging.getLogger("stageflow.sync")
#: The in-place manifest journal is compacted once it exceeds max(this, a quarter of the base manifest).
JOURNAL_MIN_COMPACT = 1 << 20


def apply(
    prep: Prepared,
    planned: Plan,
    on_changes: Callable[[ChangeSet], None] | None,
    held: Held | None = None,
) -> SyncResult:
    """Write the plan to the target under its lock (``held``); with nothing to write, only bring
    the local manifest cache up to date."""
    result = planned.result
    if result.changes or planned.pending:
        assert held is not None, "writes need the target's lock"
        if on_changes is not None:
            on_changes(result.changes)
        if prep.profile.mode == "releases":
            _apply_release(prep, planned, held)
        else:
            _apply_in_place(prep, planned, held)
    else:
        _settle_no_change(planned, result.release)
    return result


def _save_local(planned: Plan, manifest_id: str, release: str | None, full: Manifest | None = None) -> None:
    """Record the new manifest locally (after the target committed it). A failure only costs the
    accelerator next time: the ids then differ and the next sync reads the target's manifest."""
    if planned.local is None:
        return
    meta = {**planned.meta, "manifest_id": manifest_id, "release": release}
    try:
        if planned.local_ok and full is None:
            planned.local.apply(planned.sets, planned.deleted, meta)
        else:
            planned.local.replace(full if full is not None else planned.new_manifest(), meta)
    except sqlite3.Error as exc:
        logger.warning("local manifest cache not updated (%s): the next sync walks the tree", exc)


def _settle_no_change(planned: Plan, release: str | None) -> None:
    """Nothing to send: keep the local copy's bookkeeping current (no target write)."""
    if planned.base_id is None or planned.local is None:
        return
    meta = {**planned.meta, "manifest_id": planned.base_id, "release": release}
    try:
        if planned.local_ok:
            if meta != planned.local.meta:
                planned.local.set_meta(meta, expect_id=planned.base_id)
        elif planned.full is not None:
            planned.local.replace(planned.full, meta)
    except sqlite3.Error as exc:
        logger.warning("local manifest cache not updated (%s)", exc)


def _apply_in_place(prep: Prepared, planned: Plan, held: Held) -> None:
    target, result, pending = prep.target, planned.result, planned.pending
    changes = result.changes
    paths = sorted(set(changes.to_send) | set(changes.deleted) | set(pending.get("paths", [])))
    stale_paths = pending.get("paths", []) if pending.get("mode") == "in-place" else []
    held.apply({releases.PENDING_FILE: json_text({"mode": "in-place", "paths": paths})})
    if stale_paths:
        _cleanup_temps(target, "", stale_paths)
    stats = prep.transport.send(prep.source, target.transport_dest(""), changes)
    _prune_empty_dirs(target, "", changes.deleted + [d + "/" for d in changes.gone_dirs])
    _make_dirs(prep, planned, "")
    result.bytes_sent = stats.bytes
    context = DeployContext(
        target, "", prep.source, prep.request.environment, prep.profile.role, None, changes, prep.log
    )
    result.hooks = run_hooks(prep.hooks, context) if changes else []
    _commit_in_place(prep, planned, held)
    _fail_if_hook_failed(result, rolled_back=None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _commit_in_place(prep: Prepared, planned: Plan, held: Held) -> None:
    """Append the delta to the target's manifest journal (a few hundred bytes for a few changes), or
    write a compacted full manifest when there is no usable base or the journal grew past a quarter
    of it; then the state (the new id) and the end of the pending journal, in one round trip."""
    env = prep.request.environment
    journal_bytes = _int(planned.state.get("journal_bytes"))
    base_bytes = _int(planned.state.get("base_bytes"))
    if planned.base_id is not None:
        line, new_id = delta_line(planned.base_id, planned.sets, planned.deleted)
        size = len(line.encode("utf-8", "surrogateescape"))
        if journal_bytes + size <= max(JOURNAL_MIN_COMPACT, base_bytes // 4):
            state = releases.state_text(
                manifest_id=new_id,
                release=None,
                environment=env,
                journal_bytes=journal_bytes + size,
                base_bytes=base_bytes,
            )
            held.apply(
                {releases.STATE_FILE: state},
                remove=(releases.PENDING_FILE,),
                append={releases.JOURNAL_FILE: line},
            )
            _save_local(planned, new_id, None)
            return
    full = planned.new_manifest()
    text = manifest_to_json(full)
    mid = manifest_id_of_json(text)
    state = releases.state_text(
        manifest_id=mid, release=None, environment=env, journal_bytes=0, base_bytes=len(text)
    )
    prep.target.write_many(
        {releases.MANIFEST_FILE: text, releases.STATE_FILE: state},
        remove=(releases.PENDING_FILE, releases.JOURNAL_FILE),
    )
    _save_local(planned, mid, None, full)


def _apply_release(prep: Prepared, planned: Plan, held: Held) -> None:
    target, result, pending = prep.target, planned.result, planned.pending
    changes = result.changes
    previous = result.release
    stale = pending.get("release")
    if isinstance(stale, str) and stale and stale != previous:
        target.remove_tree(f"{releases.RELEASES}/{stale}")  # a killed sync's half-built release
    if not changes:
        target.remove(releases.PENDING_FILE)
        return
    new = releases.new_release_id(releases.list_releases(target), _git_short_sha(prep.source))
    target.write_text(
        releases.PENDING_FILE, json.dumps({"mode": "releases", "release": new, "previous": previous})
    )
    base = f"{releases.RELEASES}/{previous}" if previous else ""
    target.clone_tree(base, f"{releases.RELEASES}/{new}")
    stats = prep.transport.send(prep.source, target.transport_dest(f"{releases.RELEASES}/{new}"), changes)
    _prune_empty_dirs(
        target, f"{releases.RELEASES}/{new}", changes.deleted + [d + "/" for d in changes.gone_dirs]
    )
    _make_dirs(prep, planned, f"{releases.RELEASES}/{new}")
    result.bytes_sent = stats.bytes
    full = planned.new_manifest()
    text = manifest_to_json(full)
    mid = manifest_id_of_json(text)
    target.write_text(releases.manifest_path(new), text)
    releases.switch(target, new)
    result.release = new
    env = prep.request.environment
    # Live from here; the state says its hooks are still to run until they succeeded, so a sync killed
    # while they run is finished (or rolled back) by the next one instead of reporting "no changes".
    final = releases.state_text(manifest_id=mid, release=new, environment=env)
    marked = {releases.HOOKS_PENDING: new, releases.HOOKS_PREVIOUS: previous} if prep.hooks else {}
    held.apply(
        {releases.STATE_FILE: releases.state_text(manifest_id=mid, release=new, environment=env, **marked)},
        remove=(releases.PENDING_FILE,),
    )
    context = DeployContext(
        target,
        releases.CURRENT,
        prep.source,
        prep.request.environment,
        prep.profile.role,
        new,
        changes,
        prep.log,
    )
    result.hooks = run_hooks(prep.hooks, context)
    if any(h.status == "failed" for h in result.hooks):
        result.release = previous
        result.rolled_back_to = undo_release(prep, new, previous)
        prep.log(f"rolled back {prep.target.spec} to release {result.rolled_back_to}")
        _fail_if_hook_failed(result, rolled_back=result.rolled_back_to)
    if marked:
        held.apply({releases.STATE_FILE: final})  # the hooks finished
    _save_local(planned, mid, new, full)
    releases.prune(target, prep.profile.keep_releases)


def undo_release(prep: Prepared, release: str, previous: str | None) -> str:
    """Take ``release`` off the target: ``current`` back to ``previous`` (else the newest complete
    release before it; none: no ``current``), then remove it. Returns what ``current`` now is."""
    target = prep.target
    complete = [r for r in releases.complete_releases(target) if r != release]
    to = previous if previous in complete else next((r for r in reversed(complete) if r < release), None)
    if to:
        releases.rollback(target, to)
    else:
        target.remove(releases.CURRENT)
        releases.write_state(target)
    target.remove_tree(f"{releases.RELEASES}/{release}")
    target.remove(releases.manifest_path(release))
    return to or "(none: first release removed)"


def _fail_if_hook_failed(result: SyncResult, rolled_back: str | None) -> None:
    failed = next((h for h in result.hooks if h.status == "failed"), None)
    if failed is None:
        return
    message = f"hook '{failed.name}' failed: {failed.detail}"
    if rolled_back:
        message += f"; rolled back to release {rolled_back}"
    elif result.mode == "in-place":
        message += '; files were updated in place (use mode = "releases" for automatic rollback)'
    result.error = message
    raise DeployFailed(message, result)


def _git_short_sha(source: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "nogit"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "nogit"


def _cleanup_temps(target: LocalTarget | SshTarget, base: str, paths: list[str]) -> None:
    """Remove temp files a killed transfer may have left beside the paths it was writing: ours
    (``.stageflow-tmp-*``), rsync's ``--delay-updates`` directory (``.~tmp~``) and rsync's own
    in-flight copy of each path (``.<name>.XXXXXX``, six random characters)."""
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(os.path.dirname(p), []).append(os.path.basename(p))
    for d in sorted(by_dir):
        rel = "/".join(x for x in (base, d) if x)
        names = by_dir[d]
        if isinstance(target, LocalTarget):
            here = glob.escape(target.join(rel))
            found = glob.glob(os.path.join(here, ".stageflow-tmp-*"))
            for name in names:
                found += [
                    t
                    for t in glob.glob(os.path.join(here, f".{glob.escape(name)}.*"))
                    if _rsync_temp(t, name)
                ]
            for tmp in found:
                with contextlib.suppress(OSError):
                    if not os.path.isdir(tmp) or os.path.islink(tmp):
                        os.unlink(tmp)
            with contextlib.suppress(OSError):
                shutil.rmtree(os.path.join(target.join(rel), ".~tmp~"))
        else:
            rsync_temps = " ".join(shlex.quote(f".{name}.") + "??????" for name in names)
            target.run_quiet(f"rm -rf .~tmp~ .stageflow-tmp-*; rm -f -- {rsync_temps}", cwd_rel=rel)


def _rsync_temp(path: str, name: str) -> bool:
    """Whether ``path`` is rsync's temp copy of ``name``: ``.<name>.`` and six letters or digits."""
    suffix = os.path.basename(path)[len(name) + 2 :]
    return len(suffix) == 6 and suffix.isalnum() and suffix.isascii()


def _prune_empty_dirs(target: LocalTarget | SshTarget, base: str, deleted: list[str]) -> None:
    """Remove directories that deleting ``deleted`` left empty (rsync leaves them; the local
    transport already did). Only ancestors of deleted paths, never ``base`` itself."""
    dirs = sorted({os.path.dirname(p) for p in deleted} - {""}, key=len, reverse=True)
    if not dirs:
        return
    if isinstance(target, LocalTarget):
        root = target.join(base)
        for d in dirs:
            path = os.path.join(root, d)
            while path != root and os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
                os.rmdir(path)
                path = os.path.dirname(path)
    else:
        quoted = " ".join(shlex.quote(d) for d in dirs)
        target.run_quiet(f"rmdir -p --ignore-fail-on-non-empty -- {quoted}", cwd_rel=base)


def _make_dirs(prep: Prepared, planned: Plan, base: str) -> None:
    """Create the shipped directories the change set adds, and re-create the shipped ones that
    removing deleted paths emptied and pruned (rsync keeps a directory that is still in the source)."""
    changes = planned.result.changes
    keys: set[str] = set()
    for path in changes.deleted + changes.gone_dirs:
        parts = path.split("/")[:-1]
        keys.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1))
    if planned.full is not None:
        kept = {k for k in keys if k in planned.full}
    else:
        known = set(planned.local.get(keys)) if planned.local is not None else set()
        kept = (known - set(planned.deleted)) | (keys & set(planned.sets))
    dirs = sorted(set(changes.dirs) | {k[:-1] for k in kept})
    if not dirs:
        return
    target = prep.target
    if isinstance(target, LocalTarget):
        root = target.join(base)
        for d in dirs:
            path = os.path.join(root, d)
            os.makedirs(path, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(path, stat.S_IMODE(os.stat(prep.source / d).st_mode))
    else:
        target.run_quiet("mkdir -p -- " + " ".join(shlex.quote(d) for d in dirs), cwd_rel=base)
