"""A live release an interrupted sync left with its hooks unfinished (``unfinished_hooks``): found
under the lock before planning, then finished (its hooks run again) or rolled back, and reported as
a warning; a dry run only says what a sync would do."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from stageflow.sync import releases
from stageflow.sync.apply import undo_release
from stageflow.sync.hooks import DeployContext, HookOutcome, run_hooks
from stageflow.sync.manifest import ChangeSet, diff, manifest_from_json, manifest_id_of_json
from stageflow.sync.model import DeployFailed, Prepared, SyncResult
from stageflow.sync.target import Held


def finish_unfinished(prep: Prepared, held: Held, current: str | None) -> dict[str, Any] | None:
    """Under the lock, before planning: the live release an interrupted sync left with its hooks
    unfinished is finished (its hooks run again; if they fail it is rolled back, as a failed hook
    is) or, with ``unfinished_hooks = "rollback"``, rolled back. None when there is none."""
    pending: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        loaded = json.loads(held.texts.get(releases.PENDING_FILE) or "{}")
        pending = loaded if isinstance(loaded, dict) else {}
    state = releases.parse_state(held.texts.get(releases.STATE_FILE))
    found = releases.unfinished(state, pending, current)
    if found is None:
        return None
    release, previous = found
    target, env = prep.target, prep.request.environment
    if prep.profile.unfinished_hooks == "rollback":
        to = undo_release(prep, release, previous)
        prep.log(f"release {release} never finished its hooks (an interrupted sync): rolled back to {to}")
        return {"release": release, "action": "rolled back", "to": to, "hooks": []}
    text = target.read_text(releases.manifest_path(release)) or ""
    changes = ChangeSet()
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        new_manifest = manifest_from_json(text)[0]
        old_text = target.read_text(releases.manifest_path(previous)) if previous else None
        changes = diff(manifest_from_json(old_text)[0] if old_text else {}, new_manifest)
    prep.log(f"release {release} never finished its hooks (an interrupted sync): running them again")
    context = DeployContext(
        target, releases.CURRENT, prep.source, env, prep.profile.role, release, changes, prep.log
    )
    outcomes = run_hooks(prep.hooks, context)
    if any(h.status == "failed" for h in outcomes):
        to = undo_release(prep, release, previous)
        prep.log(f"rolled back {target.spec} to release {to}")
        result = SyncResult(
            environment=env,
            target=target.spec,
            role=prep.profile.role,
            mode=prep.profile.mode,
            release=None if to.startswith("(none") else to,
            hooks=outcomes,
            rolled_back_to=to,
            unfinished={"release": release, "action": "rolled back", "to": to, "hooks": _hooks_doc(outcomes)},
        )
        failed = next(h for h in outcomes if h.status == "failed")
        result.error = (
            f"release {release} was left with unfinished hooks by an interrupted sync; running them "
            f"again, hook '{failed.name}' failed: {failed.detail}; rolled back to release {to}"
        )
        raise DeployFailed(result.error, result)
    mid = manifest_id_of_json(text) if text else state.get("manifest_id")
    held.apply(
        {releases.STATE_FILE: releases.state_text(manifest_id=mid, release=release, environment=env)},
        remove=(releases.PENDING_FILE,),
    )
    return {"release": release, "action": "finished", "to": release, "hooks": _hooks_doc(outcomes)}


def _hooks_doc(outcomes: list[HookOutcome]) -> list[dict[str, str]]:
    return [{"name": h.name, "status": h.status} for h in outcomes]


def report_unfinished(result: SyncResult, unfinished: dict[str, Any] | None) -> None:
    """Say what became of an unfinished release: a warning line, and its hooks as this sync's when
    it ships nothing new."""
    if unfinished is None:
        return
    result.unfinished = unfinished
    release = unfinished["release"]
    if unfinished["action"] == "finished":
        statuses = ", ".join(f"{h['name']} {h['status']}" for h in unfinished["hooks"]) or "no hooks"
        result.warnings.append(
            f"release {release} was left with unfinished hooks by an interrupted sync: "
            f"ran them again ({statuses})"
        )
        if not result.changes:
            result.hooks = [HookOutcome(h["name"], h["status"], "re-run") for h in unfinished["hooks"]]
    else:
        result.warnings.append(
            f"release {release} was left with unfinished hooks by an interrupted sync: rolled back to "
            f'{unfinished["to"]} (unfinished_hooks = "rollback")'
        )


def warn_unfinished_dry_run(prep: Prepared, result: SyncResult) -> None:
    if prep.profile.mode != "releases" or prep.snapshot is None:
        return
    texts = prep.snapshot.read_many([releases.PENDING_FILE, releases.STATE_FILE])
    pending: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        loaded = json.loads(texts[releases.PENDING_FILE] or "{}")
        pending = loaded if isinstance(loaded, dict) else {}
    link = prep.snapshot.readlink(releases.CURRENT)
    current = link.rstrip("/").rsplit("/", 1)[-1] if link else None
    found = releases.unfinished(releases.parse_state(texts[releases.STATE_FILE]), pending, current)
    if found is not None:
        what = "roll it back" if prep.profile.unfinished_hooks == "rollback" else "run them again"
        result.warnings.append(
            f"release {found[0]} was left with unfinished hooks by an interrupted sync: a sync will {what}"
        )
