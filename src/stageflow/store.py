"""The stageflow store: one SQLite database (WAL mode) with versioned migrations kept in code, plus
online backup and checksum-verified restore.

Only this module writes SQL. It never deletes user data implicitly: a restore whose checksum does
not match is refused before the live database is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stageflow import settings
from stageflow.errors import BadInput, IntegrityError, SettingsError

#: (version, SQL). Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE seen_items (
            source TEXT NOT NULL,
            item_id TEXT NOT NULL,
            content_sha256 TEXT,
            title TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            published TEXT,
            first_seen TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (source, item_id)
        );
        CREATE TABLE records (
            tbl TEXT NOT NULL,
            record_key TEXT NOT NULL,
            data TEXT NOT NULL,
            written_at TEXT NOT NULL,
            PRIMARY KEY (tbl, record_key)
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE monitor_state (
            name TEXT PRIMARY KEY,
            ok INTEGER NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            since TEXT NOT NULL,
            checked_at TEXT NOT NULL,
            escalated INTEGER NOT NULL DEFAULT 0,
            ok_streak INTEGER NOT NULL DEFAULT 0
        );
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Store:
    """A connection to the stageflow SQLite store. Use :func:`open_store` to get one."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise SettingsError(f"cannot open store {path}: {exc}: check the path and permissions") from None
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    # ----------------------------------------------------------------- schema
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> list[int]:
        """Apply pending migrations, each in its own transaction. Returns the versions applied."""
        current = self.version()
        if current > LATEST_VERSION:
            raise BadInput(
                f"store {self.path} has schema version {current}, newer than this stageflow "
                f"({LATEST_VERSION}): upgrade stageflow"
            )
        applied = []
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction():
                for statement in (s.strip() for s in sql.split(";")):
                    if statement:
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {int(version)}")
            applied.append(version)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # ----------------------------------------------------------------- seen items (dedup)
    def unseen(self, source: str, item_ids: Iterable[str]) -> set[str]:
        ids = list(item_ids)
        if not ids:
            return set()
        placeholders = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT item_id FROM seen_items WHERE source = ? AND item_id IN ({placeholders})",
            [source, *ids],
        ).fetchall()
        return set(ids) - {r["item_id"] for r in rows}

    def mark_seen(self, source: str, items: Sequence[Mapping[str, Any]]) -> int:
        """Record items as seen; already-seen ids are left as they are. Returns rows inserted."""
        now = _now()
        with self.transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO seen_items (source, item_id, content_sha256, title, url, published,"
                " first_seen, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source,
                        str(i["item_id"]),
                        i.get("content_sha256"),
                        i.get("title", ""),
                        i.get("url", ""),
                        i.get("published"),
                        now,
                        json.dumps(i, default=str, ensure_ascii=False),
                    )
                    for i in items
                ],
            )
            return self.conn.total_changes - before

    def count_seen(self, source: str | None = None) -> int:
        if source is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM seen_items").fetchone()[0])
        return int(
            self.conn.execute("SELECT COUNT(*) FROM seen_items WHERE source=?", [source]).fetchone()[0]
        )

    # ----------------------------------------------------------------- generic records (sqlite sink)
    def upsert_records(self, table: str, records: Sequence[Mapping[str, Any]], key: str) -> int:
        now = _now()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO records (tbl, record_key, data, written_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tbl, record_key) DO UPDATE SET data = excluded.data,"
                " written_at = excluded.written_at",
                [(table, str(r[key]), json.dumps(r, default=str, ensure_ascii=False), now) for r in records],
            )
        return len(records)

    def records(self, table: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT data FROM records WHERE tbl = ? ORDER BY record_key", [table]
        ).fetchall()
        return [json.loads(r["data"]) for r in rows]

    # ----------------------------------------------------------------- runs
    def start_run(self, job: str) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (job, started_at, status) VALUES (?, ?, 'running')", [job, _now()]
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, summary: Mapping[str, Any]) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                [_now(), status, json.dumps(summary, default=str), run_id],
            )

    # ----------------------------------------------------------------- monitor state
    def monitor_states(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM monitor_state").fetchall()
        return {r["name"]: {**dict(r), "ok": bool(r["ok"]), "escalated": bool(r["escalated"])} for r in rows}

    def save_monitor_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO monitor_state (name, ok, detail, since, checked_at, escalated, ok_streak)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET ok = excluded.ok,"
                " detail = excluded.detail, since = excluded.since, checked_at = excluded.checked_at,"
                " escalated = excluded.escalated, ok_streak = excluded.ok_streak",
                [
                    (
                        n,
                        int(s["ok"]),
                        s.get("detail", ""),
                        s["since"],
                        s["checked_at"],
                        int(s.get("escalated", 0)),
                        int(s.get("ok_streak", 0)),
                    )
                    for n, s in states.items()
                ],
            )

    # ----------------------------------------------------------------- backup / restore
    def backup(self, dest: Path) -> Path:
        """Online backup (SQLite backup API) to ``dest`` plus ``dest.sha256``. Returns the checksum file."""
        dest = dest.expanduser()
        if dest.exists() and dest.is_dir():
            dest = dest / f"stageflow-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(tmp)
        try:
            self.conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        os.replace(tmp, dest)
        checksum = dest.with_name(dest.name + ".sha256")
        checksum.write_text(f"{sha256_file(dest)}  {dest.name}\n", encoding="utf-8")
        return checksum

    def restore(self, source: Path) -> None:
        """Replace the store's contents with the backup ``source`` after verifying its sha256 file and
        its integrity; on any mismatch nothing is changed."""
        source = source.expanduser()
        checksum = source.with_name(source.name + ".sha256")
        if not source.is_file():
            raise BadInput(f"backup {source} not found: pass the .db file written by `stageflow db backup`")
        if not checksum.is_file():
            raise IntegrityError(f"{checksum} is missing: a backup is restored only with its checksum file")
        expected = checksum.read_text(encoding="utf-8").split()[0].lower() if checksum.stat().st_size else ""
        actual = sha256_file(source)
        if expected != actual:
            raise IntegrityError(
                f"backup {source} does not match {checksum.name} (sha256 {actual[:12]}… != {expected[:12]}…):"
                " the file is corrupt or was changed; nothing was restored"
            )
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            ok = src.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise IntegrityError(
                    f"backup {source} fails SQLite's integrity check ({ok}); nothing restored"
                )
            version = int(src.execute("PRAGMA user_version").fetchone()[0])
            if version > LATEST_VERSION:
                raise BadInput(f"backup {source} has schema {version}, newer than this stageflow: upgrade")
            src.backup(self.conn)
        finally:
            src.close()
        self.migrate()


def open_store(path: Path | None = None, *, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store at ``path`` or ``$STAGEFLOW_HOME/stageflow.db``."""
    store = Store(path or settings.store_path())
    if migrate:
        store.migrate()
    return store
