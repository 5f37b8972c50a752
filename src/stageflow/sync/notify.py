"""The inotify detector: the warm sync server watches the sources it served and answers "which paths
changed since the last successful sync to this target", as Turborepo's daemon does for its file
hashes. Needs no set-up and no watchman: the first served sync of a source starts the watch (and
uses git or walks, as always); every later one stats only what changed.

How it works. The server process (:mod:`stageflow.fast.sync_server`) holds one :class:`Tree` per source:
an inotify descriptor with a watch on every directory of the source (``.git`` and ``.stageflow``
left out) and a log ``path -> sequence number`` of every file event. A sync, run in a fork of the
server, asks its parent over a socket pair (:func:`look`) with the token the last successful sync to
its target recorded; the parent first reads every event queued on the descriptor (the kernel queues
an event before the system call that caused it returns, so every change completed before the
question is in the answer), then answers the paths and directories logged after the token, and a new
token. The sync records that token only once the target has committed, so a failed sync asks again
from the older one; an event during a sync gets a sequence number above the token the sync got and
is in the next answer.

Advisory, like :mod:`stageflow.sync.gitscan` and :mod:`stageflow.sync.watch`: every doubt is
``changed=None`` with a reason and the engine uses git, then the walk, exactly as without it: the
kernel's event queue overflowed (IN_Q_OVERFLOW), the watch limit (``fs.inotify.max_user_watches``)
was hit while adding the watches, the server restarted since the token (another instance), the
source directory itself was moved or deleted, the log was trimmed past the token, or the server did
not answer. A directory created or moved in (or moved away) is answered as a directory to walk, so
files made in it before its watch was added are seen too.

Not seen (as with watchman): writes through ``mmap``, and writes through a hard link outside the
source; ``--no-git`` (or ``STAGEFLOW_SYNC_SERVER=0``, or an in-process sync) never asks.

Library: inotify_simple (https://pypi.org/project/inotify-simple/), a thin wrapper over the three
system calls. watchdog was the alternative; it delivers events from its own thread and queue, so "all
events up to now" cannot be asked for, and it hides IN_Q_OVERFLOW; both are what this detector needs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
from typing import Any

from stageflow.sync.watch import WatchView

#: The meta key a sync records the token under (beside "watchman").
KEY = "inotify"
#: Directories never watched (the engine never ships them: rules.ALWAYS_EXCLUDED).
_SKIP_DIRS = frozenset({".git", ".stageflow"})
#: At most this many sources watched at once (the least recently asked is dropped first).
MAX_TREES = 8
#: The log is cleared (older tokens then fall back to git) once it names this many paths.
MAX_LOG = 500_000
#: After a failed watch (limit hit), the source is not tried again for this long.
RETRY_S = 300.0
#: How long a sync waits for the server's answer before it uses git.
_ANSWER_TIMEOUT_S = 30.0

#: In a sync the server forked: the socket to the parent (None: not served, no detector).
CHANNEL: socket.socket | None = None


def _flags() -> Any:
    from inotify_simple import flags

    return flags


def _mask() -> int:
    f = _flags()
    return int(
        f.MODIFY
        | f.ATTRIB
        | f.CLOSE_WRITE
        | f.MOVED_FROM
        | f.MOVED_TO
        | f.CREATE
        | f.DELETE
        | f.DELETE_SELF
        | f.MOVE_SELF
        | f.DONT_FOLLOW
        | f.ONLYDIR
        | f.EXCL_UNLINK
    )


def max_user_watches() -> int | None:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


#: Overrides the watch budget (directories per source); default: half of max_user_watches, which is
#: per user and shared with editors and other watchers.
BUDGET_ENV = "STAGEFLOW_SYNC_MAX_WATCHES"


def watch_budget() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw.isdigit():
        return int(raw)
    limit = max_user_watches()
    return max(1, limit // 2) if limit else 4096


class WatchFailed(Exception):
    """The tree cannot be watched (the message says why)."""


class Tree:
    """The watch of one source directory (lives in the sync server)."""

    def __init__(self, root: str) -> None:
        try:
            from inotify_simple import INotify
        except ImportError:
            raise WatchFailed("inotify_simple is not installed (pip install inotify_simple)") from None

        self.root = root
        self.instance = secrets.token_hex(6)
        self.seq = 0
        self.broken: str | None = None
        self.floor = 0  # tokens below this were issued before the log was trimmed
        self.files: dict[str, int] = {}
        self.dirs: dict[str, int] = {}
        self._wd: dict[int, str] = {}  # watch descriptor -> directory (relative, "" for the root)
        self._by_dir: dict[str, int] = {}
        self._mask = _mask()
        self._budget = watch_budget()
        try:
            self._ino = INotify(nonblocking=True)
        except OSError as exc:
            raise WatchFailed(
                f"inotify unavailable ({exc.strerror}: fs.inotify.max_user_instances?)"
            ) from None
        try:
            self._add_tree("")
        except WatchFailed:
            self.close()
            raise
        if self.broken:
            self.close()
            raise WatchFailed(self.broken)

    def fileno(self) -> int:
        return self._ino.fileno()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._ino.close()

    @property
    def watches(self) -> int:
        return len(self._wd)

    def token(self) -> str:
        return f"{self.instance}:{self.seq}"

    # -------------------------------------------------------------------------------- watches
    def _add_tree(self, top: str) -> None:
        """Watch ``top`` and every directory below it (not through symlinks)."""
        stack = [top]
        while stack:
            rel = stack.pop()
            path = os.path.join(self.root, rel) if rel else self.root
            if len(self._wd) >= self._budget:
                raise WatchFailed(
                    f"the source has more than {self._budget} directories, stageflow's share of the inotify "
                    f"watches (fs.inotify.max_user_watches={max_user_watches()}, {BUDGET_ENV} overrides it)"
                )
            try:
                wd = self._ino.add_watch(path, self._mask)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    limit = max_user_watches()
                    raise WatchFailed(
                        f"inotify watch limit reached after {len(self._wd)} directories "
                        f"(fs.inotify.max_user_watches={limit}): raise it with sysctl to watch this source"
                    ) from None
                if rel == "" and top == "":
                    raise WatchFailed(f"cannot watch the source ({exc.strerror})") from None
                continue  # gone (or not a directory any more) since it was listed
            old = self._wd.get(wd)
            if old is not None and old != rel:
                self._by_dir.pop(old, None)
            self._wd[wd] = rel
            self._by_dir[rel] = wd
            try:
                with os.scandir(path) as it:
                    for de in it:
                        if de.name in _SKIP_DIRS:
                            continue
                        with contextlib.suppress(OSError):
                            if de.is_dir(follow_symlinks=False):
                                stack.append(f"{rel}/{de.name}" if rel else de.name)
            except OSError:
                continue

    def _forget(self, top: str) -> None:
        """Stop watching ``top`` and below (moved away or deleted)."""
        prefix = top + "/"
        for rel in [d for d in self._by_dir if d == top or d.startswith(prefix)]:
            wd = self._by_dir.pop(rel)
            self._wd.pop(wd, None)
            with contextlib.suppress(OSError):
                self._ino.rm_watch(wd)

    # -------------------------------------------------------------------------------- events
    def pump(self) -> None:
        """Read every queued event into the log."""
        f = _flags()
        while self.broken is None:
            try:
                events = self._ino.read(timeout=0)
            except BlockingIOError:
                return
            except OSError as exc:
                self.broken = f"reading inotify events failed ({exc.strerror})"
                return
            if not events:
                return
            self.seq += 1
            seq = self.seq
            for ev in events:
                mask = ev.mask
                if mask & f.Q_OVERFLOW:
                    self.broken = (
                        "the inotify event queue overflowed (fs.inotify.max_queued_events): events were lost"
                    )
                    return
                base = self._wd.get(ev.wd)
                if base is None:
                    continue
                if mask & f.IGNORED:
                    self._wd.pop(ev.wd, None)
                    if self._by_dir.get(base) == ev.wd:
                        self._by_dir.pop(base, None)
                    if base == "":
                        self.broken = "the source directory was moved or deleted"
                        return
                    continue
                if mask & (f.DELETE_SELF | f.MOVE_SELF):
                    if base == "":
                        self.broken = "the source directory was moved or deleted"
                        return
                    continue  # the parent's event names it
                if mask & f.UNMOUNT:
                    self.broken = "a file system below the source was unmounted"
                    return
                name = ev.name
                if not name:
                    continue
                rel = f"{base}/{name}" if base else name
                if mask & f.ISDIR:
                    if name in _SKIP_DIRS:
                        continue
                    if mask & (f.CREATE | f.MOVED_TO):
                        self.dirs[rel] = seq
                        try:
                            self._add_tree(rel)
                        except WatchFailed as exc:
                            self.broken = str(exc)
                            return
                    elif mask & (f.MOVED_FROM | f.DELETE):
                        self.dirs[rel] = seq
                        self._forget(rel)
                    continue
                self.files[rel] = seq
            if len(self.files) + len(self.dirs) > MAX_LOG:
                self.files.clear()
                self.dirs.clear()
                self.floor = self.seq

    def since(self, token: Any) -> dict[str, Any]:
        """The answer to a sync: everything logged after ``token`` (a str from :meth:`token`)."""
        self.pump()
        if self.broken:
            return {"reason": self.broken}
        answer: dict[str, Any] = {"token": self.token()}
        if not isinstance(token, str) or token.count(":") != 1:
            answer["reason"] = "no inotify token recorded for this target yet"
            return answer
        instance, _, raw = token.partition(":")
        try:
            seq = int(raw)
        except ValueError:
            seq = -1
        if instance != self.instance or not 0 <= seq <= self.seq:
            answer["reason"] = "the sync server was restarted (or re-watched the source) since the last sync"
        elif seq < self.floor:
            answer["reason"] = "the inotify change log was trimmed since the last sync"
        else:
            answer["changed"] = sorted(p for p, s in self.files.items() if s > seq)
            answer["dirs"] = sorted(d for d, s in self.dirs.items() if s > seq)
        return answer


class Registry:
    """The server's watches, by source (realpath)."""

    def __init__(self) -> None:
        self.trees: dict[str, Tree] = {}
        self._failed: dict[str, tuple[float, str]] = {}

    def fds(self) -> list[Tree]:
        return list(self.trees.values())

    def pump(self, tree: Tree) -> None:
        tree.pump()
        if tree.broken:
            self.drop(tree.root)

    def drop(self, root: str) -> None:
        tree = self.trees.pop(root, None)
        if tree is not None:
            tree.close()

    def close(self) -> None:
        for root in list(self.trees):
            self.drop(root)

    def forget_in_child(self) -> None:
        """In a fork: close the inherited inotify descriptors (the watches stay the parent's)."""
        for tree in self.trees.values():
            with contextlib.suppress(OSError):
                os.close(tree.fileno())
        self.trees = {}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        root = request.get("root")
        if not isinstance(root, str) or not os.path.isabs(root):
            return {"reason": "bad inotify request"}
        tree = self.trees.pop(root, None)
        if tree is not None:
            result = tree.since(request.get("token"))
            if tree.broken:
                tree.close()
                self._failed.pop(root, None)
                tree = None  # a fresh watch right away: this sync uses git, the next one inotify
            else:
                self.trees[root] = tree  # most recently asked last
                return result
            why = result["reason"]
        else:
            why = "no inotify token recorded for this target yet"
            failed = self._failed.get(root)
            if failed is not None and time.monotonic() - failed[0] < RETRY_S:
                return {"reason": failed[1]}
        try:
            tree = Tree(root)
        except WatchFailed as exc:
            self._failed[root] = (time.monotonic(), str(exc))
            return {"reason": str(exc)}
        while len(self.trees) >= MAX_TREES:
            self.drop(next(iter(self.trees)))
        self.trees[root] = tree
        return {"token": tree.token(), "reason": why}


# ------------------------------------------------------------------------------------------ client
def look(source: os.PathLike[str] | str, recorded: dict[str, Any] | None) -> WatchView | None:
    """In a served sync: ask the server. None when not served (no detector); else a view whose
    ``changed`` (and ``dirs``) answer, or None with the reason (the caller uses git or walks and
    records the view's token)."""
    channel = CHANNEL
    if channel is None:
        return None
    root = os.path.realpath(source)
    token = recorded.get("clock") if isinstance(recorded, dict) and recorded.get("root") == root else None
    try:
        channel.settimeout(_ANSWER_TIMEOUT_S)
        channel.sendall(json.dumps({"root": root, "token": token}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = channel.recv(1 << 20)
            if not chunk:
                raise OSError("the sync server closed the channel")
            data += chunk
        answer = json.loads(data)
    except (OSError, ValueError):
        return None
    new = answer.get("token")
    if not isinstance(new, str):
        return None  # the source cannot be watched: git, and nothing recorded
    changed, dirs = answer.get("changed"), answer.get("dirs")
    view = WatchView(root, "", new, None, answer.get("reason"), key=KEY)
    if isinstance(changed, list) and isinstance(dirs, list):
        view.changed, view.dirs = set(changed), set(dirs)
    return view


def serve_channel(registry: Registry, conn: socket.socket) -> bool:
    """Answer one question on ``conn`` (the server's end); False when the sync closed it."""
    try:
        data = conn.recv(1 << 16)
        while data and not data.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                return False
            data += more
    except OSError:
        return False
    if not data:
        return False
    try:
        request = json.loads(data)
        answer = registry.answer(request if isinstance(request, dict) else {})
    except ValueError:
        answer = {"reason": "bad inotify request"}
    try:
        conn.setblocking(True)
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        return False
    return True
