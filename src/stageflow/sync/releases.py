"""Release layout on a target (Capistrano style): ``releases/<timestamp>-<shortsha>/`` and a
``current`` symlink swapped atomically; listing, pruning and rollback.

This module only moves the ``current`` link and removes releases that are neither current nor
among the newest ``keep`` complete ones; it never touches files inside a kept release.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stageflow.errors import BadInput
from stageflow.sync.target import STATE_DIR, LocalTarget, SshTarget

RELEASES = "releases"
CURRENT = "current"
STATE_FILE = f"{STATE_DIR}/state.json"
PENDING_FILE = f"{STATE_DIR}/pending.json"
MANIFEST_FILE = f"{STATE_DIR}/manifest.json"
#: In-place mode: deltas appended after MANIFEST_FILE (see stageflow.sync.manifest.replay).
JOURNAL_FILE = f"{STATE_DIR}/manifest.journal"
#: State keys of a release whose hooks have not finished: written (atomically, with the rest of the
#: state) when ``current`` moves to a new release, dropped once its hooks succeeded. A sync killed
#: while the hooks ran leaves them, and the next sync finishes or rolls back that release.
HOOKS_PENDING = "hooks_pending"
HOOKS_PREVIOUS = "hooks_previous"


def manifest_path(release: str | None) -> str:
    """Where the manifest of a release (None: the in-place tree) lives on the target."""
    return f"{STATE_DIR}/manifests/{release}.json" if release else MANIFEST_FILE


def new_release_id(existing: list[str], short_sha: str) -> str:
    base = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{short_sha}"
    rid, n = base, 1
    while rid in existing:
        n += 1
        rid = f"{base}.{n}"
    return rid


def current_release(target: LocalTarget | SshTarget) -> str | None:
    link = target.readlink(CURRENT)
    if not link:
        return None
    return link.rstrip("/").rsplit("/", 1)[-1]


def list_releases(target: LocalTarget | SshTarget) -> list[str]:
    return target.list_dir(RELEASES)


def complete_releases(target: LocalTarget | SshTarget) -> list[str]:
    """Releases whose manifest was written (a sync finished building them)."""
    done = {n[: -len(".json")] for n in target.list_dir(f"{STATE_DIR}/manifests") if n.endswith(".json")}
    return [r for r in list_releases(target) if r in done]


def switch(target: LocalTarget | SshTarget, release: str) -> None:
    target.swap_symlink(CURRENT, f"{RELEASES}/{release}")


def prune(target: LocalTarget | SshTarget, keep: int) -> list[str]:
    """Remove incomplete releases and complete ones beyond the newest ``keep`` (never current)."""
    current = current_release(target)
    complete = complete_releases(target)
    keep_set = set(complete[-keep:]) | ({current} if current else set())
    removed = []
    for rel in list_releases(target):
        if rel not in keep_set:
            target.remove_tree(f"{RELEASES}/{rel}")
            target.remove(manifest_path(rel))
            removed.append(rel)
    return removed


def unfinished(
    state: dict[str, Any], pending: dict[str, Any], current: str | None
) -> tuple[str, str | None] | None:
    """(release, the release before it) when ``current`` is a release whose hooks never finished:
    the state names it as hooks-pending, or a sync was killed between moving ``current`` to it and
    committing the state (the pending journal still names it). None otherwise."""
    if not current:
        return None
    if state.get(HOOKS_PENDING) == current:
        previous = state.get(HOOKS_PREVIOUS)
        return current, previous if isinstance(previous, str) and previous else None
    if pending.get("mode") == "releases" and pending.get("release") == current:
        previous = pending.get("previous", state.get("release"))
        return current, previous if isinstance(previous, str) and previous != current else None
    return None


def state_text(**state: object) -> str:
    """One line of JSON (so it can travel through the held lock session)."""
    from stageflow.sync.manifest import json_text

    return json_text(state)


def write_state(target: LocalTarget | SshTarget, **state: object) -> None:
    target.write_text(STATE_FILE, state_text(**state))


def read_state(target: LocalTarget | SshTarget) -> dict[str, object]:
    return parse_state(target.read_text(STATE_FILE))


def parse_state(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def rollback(target: LocalTarget | SshTarget, to: str | None = None) -> tuple[str | None, str]:
    """Point ``current`` at ``to`` (default: the complete release before current). Returns (from, to)."""
    current = current_release(target)
    complete = complete_releases(target)
    if not complete:
        raise BadInput(f'{target.spec} has no releases to roll back to: rollback needs mode = "releases"')
    if to is None:
        older = [r for r in complete if current is None or r < current]
        if not older:
            raise BadInput(
                f"{target.spec}: no release older than current ({current}) to roll back to: "
                f"pass --to (releases: {', '.join(complete)})"
            )
        to = older[-1]
    elif to not in complete:
        raise BadInput(
            f"{target.spec}: release '{to}' not found (releases: {', '.join(complete)}): pass one to --to"
        )
    switch(target, to)
    state = read_state(target)
    manifest_text = target.read_text(manifest_path(to)) or ""
    from stageflow.sync.manifest import manifest_id_of_json

    state["release"] = to
    state.pop(HOOKS_PENDING, None)  # a hand rollback leaves nothing to finish
    state.pop(HOOKS_PREVIOUS, None)
    if manifest_text:
        state["manifest_id"] = manifest_id_of_json(manifest_text)
    write_state(target, **state)
    return current, to
