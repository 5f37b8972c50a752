"""The local copy of each target's manifest, and the git accelerator's bookkeeping for it (last synced
commit, paths that were dirty then, directories walked, rules digest), in one small SQLite file per
target under ``$STAGEFLOW_HOME/sync/``. Indexed by path, so a sync that looks at 10 paths reads 10
rows, not a 100k-entry manifest.

A cache, never the truth: its ``manifest_id`` is trusted only while it equals the id the target's own
state declares; anything missing, unreadable or different means "rebuild from the target and walk".
This module never touches a target or the source tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stageflow.errors import SettingsError
from stageflow.sync.manifest import Entry, Manifest

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
    " mode INTEGER, digest TEXT, link BLOB) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)",
)


def _row(path: str, e: Entry) -> tuple[bytes, int, int, int, str, bytes | None]:
    link = os.fsencode(e.link) if e.link is not None else None
    return (os.fsencode(path), e.size, e.mtime_ns, e.mode, e.digest, link)


def _entry(row: tuple[Any, ...]) -> tuple[str, Entry]:
    link = os.fsdecode(row[5]) if row[5] is not None else None
    return os.fsdecode(row[0]), Entry(row[1], row[2], row[3], row[4], link)


class LocalState:
    """One target's cached manifest and accelerator metadata. Open with :meth:`open`."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        if read_only:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            # WAL + NORMAL: a commit does not fsync; after a power loss the last commits may be gone,
            # never half-applied, and a lost commit only means an id mismatch (a walk), never a wrong
            # baseline.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self.conn.execute(statement)
        row = self.conn.execute("SELECT v FROM meta WHERE k = 'state'").fetchone()
        meta = json.loads(row[0]) if row else {}
        self.meta: dict[str, Any] = meta if isinstance(meta, dict) else {}

    @classmethod
    def open(cls, key: str, read_only: bool = False) -> LocalState | None:
        """The state for target ``key``; None when it cannot be opened (the sync then walks).
        ``read_only`` (dry runs) never creates or changes anything."""
        from stageflow import settings

        name = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        try:
            if read_only:
                path = settings.home_path() / "sync" / f"{name}.sqlite"
                return cls(path, read_only=True) if path.is_file() else None
            directory = settings.home() / "sync"
            directory.mkdir(exist_ok=True)
            return cls(directory / f"{name}.sqlite")
        except (OSError, sqlite3.Error, ValueError, SettingsError):
            return None  # an unwritable home only costs the accelerator

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # ------------------------------------------------------------------------------- reads
    def get(self, paths: Iterable[str]) -> Manifest:
        """Entries of those ``paths`` that are in the manifest."""
        out: Manifest = {}
        keys = [os.fsencode(p) for p in paths]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT * FROM entries WHERE path IN ({marks})", chunk):
                path, entry = _entry(row)
                out[path] = entry
        return out

    def under(self, directory: str) -> Manifest:
        """Entries below ``directory`` (relative, no trailing slash)."""
        low = os.fsencode(directory) + b"/"
        high = low[:-1] + b"0"  # the byte after '/'
        rows = self.conn.execute("SELECT * FROM entries WHERE path >= ? AND path < ?", (low, high))
        return dict(_entry(row) for row in rows)

    def all(self) -> Manifest:
        return dict(_entry(row) for row in self.conn.execute("SELECT * FROM entries"))

    # ------------------------------------------------------------------------------- writes
    def apply(self, sets: Mapping[str, Entry], deleted: Iterable[str], meta: dict[str, Any]) -> None:
        """Apply one sync's delta and replace the metadata, in one transaction."""
        with self._transaction():
            self.conn.executemany("DELETE FROM entries WHERE path = ?", [(os.fsencode(p),) for p in deleted])
            self.conn.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                [_row(p, e) for p, e in sets.items()],
            )
            self._set_meta(meta)

    def replace(self, manifest: Mapping[str, Entry], meta: dict[str, Any]) -> None:
        """Replace the whole manifest and the metadata, in one transaction."""
        with self._transaction():
            self.conn.execute("DELETE FROM entries")
            self.conn.executemany(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", [_row(p, e) for p, e in manifest.items()]
            )
            self._set_meta(meta)

    def set_meta(self, meta: dict[str, Any], expect_id: str | None = None) -> None:
        """Replace the metadata; with ``expect_id``, only while the stored manifest id is still that
        one (a no-change sync runs without the target lock and must not undo a concurrent sync)."""
        with self._transaction():
            if expect_id is not None:
                row = self.conn.execute("SELECT v FROM meta WHERE k = 'state'").fetchone()
                if not row or json.loads(row[0]).get("manifest_id") != expect_id:
                    return
            self._set_meta(meta)

    def _set_meta(self, meta: dict[str, Any]) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (json.dumps(meta),))
        self.meta = dict(meta)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
