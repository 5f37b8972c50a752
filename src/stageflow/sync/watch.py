"""The watchman accelerator: ask a running watchman (https://facebook.github.io/watchman/) which
files changed since the clock the last successful sync to a target recorded, instead of asking
``git status`` (which lstat()s every tracked file: its cost grows with the tree, watchman's with the
change).

Advisory, like :mod:`stageflow.sync.gitscan`: it never decides what ships. Every answer it cannot
give (watchman not installed, not running, the source not watched, watchman restarted or recrawled
since the recorded clock, any error) comes back as ``changed=None`` with a reason, and the engine
then uses git or walks. Each query carries watchman's ``sync_timeout``: watchman first writes a
cookie file and waits until its own notifications have caught up with it, so the answer covers
every change made before the query.

Three settings (``watchman`` in an environment's profile): ``"auto"`` (default) uses watchman only
when its server is already running and already watches the source (for example for git's fsmonitor
hook or Jest): no daemon is started and nothing is watched on stageflow's account; ``true`` starts
the server and ``watch-project``s the source when needed; ``false`` never asks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Setting = bool | Literal["auto"]
#: Wall-clock bound on one watchman call, and watchman's own bound on catching up (sync_timeout).
_TIMEOUT_S = 20.0
_SYNC_TIMEOUT_MS = 10_000


class WatchmanUnavailable(Exception):
    """watchman cannot answer; the message is the reason reported as ``accelerator_reason``."""


@dataclass
class WatchView:
    """What watchman said at one moment (taken before anything is stat()ed)."""

    root: str  # watchman's watch root
    relative: str  # the source below the root ("" when the source is the root)
    clock: str  # watchman's clock at the query: the next sync asks "since" this
    #: Paths (relative to the source, no directories) created, changed or deleted since the recorded
    #: clock; None when there is no usable recorded clock (``reason`` says why).
    changed: set[str] | None = None
    reason: str | None = None
    #: Directories to walk whole (created, moved in or away since the clock; the inotify detector).
    dirs: set[str] = field(default_factory=set)
    #: The detector: the accelerator's name and the key its bookkeeping is saved under.
    key: str = "watchman"

    def record(self) -> dict[str, str]:
        """The bookkeeping a successful sync saves (what :func:`look` takes next time)."""
        return {"root": self.root, "relative": self.relative, "clock": self.clock}


def _call(command: list[Any], spawn: bool) -> dict[str, Any]:
    binary = shutil.which("watchman")
    if binary is None:
        raise WatchmanUnavailable("watchman is not installed")
    argv = [binary, "-j", "--no-pretty", *([] if spawn else ["--no-spawn"])]
    try:
        proc = subprocess.run(
            argv, input=json.dumps(command).encode(), capture_output=True, timeout=_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise WatchmanUnavailable(f"watchman {command[0]} took more than {_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise WatchmanUnavailable(f"watchman could not run ({exc.strerror})") from None
    try:
        doc = json.loads(proc.stdout or b"{}")
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    if proc.returncode != 0 or "error" in doc:
        detail = str(doc.get("error") or proc.stderr.decode("utf-8", "replace").strip() or "no answer")
        if not spawn and ("connect" in detail or "No such file" in detail or "spawn" in detail):
            detail = "the watchman server is not running"
        raise WatchmanUnavailable(f"watchman {command[0]}: {detail.splitlines()[0][:200]}")
    if any("recrawl" in str(doc.get(k, "")).lower() for k in ("warning", "recrawl")):
        raise WatchmanUnavailable("watchman recrawled the tree (events were lost)")
    return doc


def _rel(source: Path, root: str) -> str | None:
    """``source`` below watch root ``root`` ("" for the root itself), or None when not below it."""
    try:
        rel = os.path.relpath(source, root)
    except ValueError:
        return None
    if rel == ".":
        return ""
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        return None
    return rel


def _find_root(source: Path, setting: Setting) -> tuple[str, str]:
    """(watch root, source relative to it): with ``True`` watch-project the source when needed; with
    ``"auto"`` only an existing watch counts."""
    spawn = setting is True
    if spawn:
        doc = _call(["watch-project", str(source)], spawn=True)
        root = str(doc.get("watch", ""))
        rel = str(doc.get("relative_path") or "")
        if not root:
            raise WatchmanUnavailable("watchman watch-project gave no root")
        return root, rel
    roots = _call(["watch-list"], spawn=False).get("roots") or []
    found = [(r, sub) for r in roots if (sub := _rel(source, str(r))) is not None]
    if not found:
        raise WatchmanUnavailable("watchman does not watch the source (set watchman = true to start it)")
    root, rel = max(found, key=lambda pair: len(pair[0]))  # the innermost watch
    return str(root), rel


def look(source: Path, setting: Setting, recorded: dict[str, Any] | None) -> WatchView | None:
    """Ask watchman. ``recorded``: the bookkeeping of the last successful sync to this target (its
    :meth:`WatchView.record`). Returns None when watchman is off or not usable at all, else a view
    whose ``changed`` is the answer or None (no usable recorded clock: the caller uses git or walks
    and records the view's clock)."""
    if setting is False:
        return None
    source = Path(os.path.realpath(source))
    keys = ("root", "relative", "clock")
    if isinstance(recorded, dict) and all(isinstance(recorded.get(k), str) for k in keys):
        root, rel, clock = recorded["root"], recorded["relative"], recorded["clock"]
        if _rel(source, root) == rel:
            try:
                return _since(source, root, rel, clock)
            except WatchmanUnavailable as exc:
                return _fresh(source, setting, str(exc))
    return _fresh(source, setting, "no watchman clock recorded for this target yet")


def _fresh(source: Path, setting: Setting, reason: str) -> WatchView | None:
    """Only a clock (taken before git or the walk look at the tree): the next sync asks since it."""
    try:
        root, rel = _find_root(source, setting)
        doc = _call(["clock", root, {"sync_timeout": _SYNC_TIMEOUT_MS}], spawn=setting is True)
    except WatchmanUnavailable:
        return None
    return WatchView(root, rel, str(doc["clock"]), None, reason)


def _since(source: Path, root: str, rel: str, clock: str) -> WatchView:
    query: dict[str, Any] = {
        "since": clock,
        "fields": ["name"],
        "expression": ["not", ["anyof", ["type", "d"], ["dirname", ".git"]]],
        "sync_timeout": _SYNC_TIMEOUT_MS,
        "empty_on_fresh_instance": True,
    }
    if rel:
        query["relative_root"] = rel
    doc = _call(["query", root, query], spawn=False)
    new_clock = str(doc.get("clock") or "")
    if not new_clock:
        raise WatchmanUnavailable("watchman query gave no clock")
    if doc.get("is_fresh_instance"):
        reason = "watchman restarted (or the watch was re-created) since the last sync"
        return WatchView(root, rel, new_clock, None, reason)
    names = doc.get("files") or []
    changed = {n if isinstance(n, str) else str(n.get("name", "")) for n in names}
    changed.discard("")
    return WatchView(root, rel, new_clock, changed)
