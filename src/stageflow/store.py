"""The stageflow store's kernel: one SQLite database (WAL mode) with versioned migrations kept in code
(:mod:`stageflow.migrations`), seen items, generic records, runs, monitor state, service calls, the
shared rate buckets, notifications, plus online backup and checksum-verified restore.

A family's own tables are read and written by that family over the same connection (the video
family's videos, candidates and status history: :mod:`stageflow.video.store`); this kernel never
imports a family. It never deletes user data implicitly: a restore whose checksum does
not match, or a file that is not a sound stageflow store (not SQLite, damaged, another application's
database), is refused before the live database is touched; a restore migrates a private copy first.
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
from typing import Any, cast

from stageflow import settings
from stageflow.errors import BadInput, IntegrityError, SettingsError
from stageflow.migrations import LATEST_VERSION, MIGRATIONS, expected_schema, schema_of

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Store", "open_store", "sha256_file", "utc_now"]


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 to the second (the timestamps of every store row)."""
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
        now = utc_now()
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
        now = utc_now()
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
                "INSERT INTO runs (job, started_at, status) VALUES (?, ?, 'running')", [job, utc_now()]
            )
        return int(cast(int, cur.lastrowid))  # an INSERT sets it

    def finish_run(self, run_id: int, status: str, summary: Mapping[str, Any]) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                [utc_now(), status, json.dumps(summary, default=str), run_id],
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

    # ----------------------------------------------------------------- service calls, cache, notifications
    def record_api_call(self, service: str, endpoint: str, http_status: int | None, ok: bool) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO api_calls (service, endpoint, http_status, ok, at) VALUES (?, ?, ?, ?, ?)",
                [service, endpoint, http_status, int(ok), utc_now()],
            )

    def count_api_calls(self, service: str, since: str | None = None) -> int:
        """Calls to ``service`` at or after the ISO time ``since`` (all when None)."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM api_calls WHERE service = ? AND at >= ?", [service, since or ""]
        ).fetchone()
        return int(row[0])

    def cache_get(self, service: str, key: str, *, not_before: float) -> Any | None:
        row = self.conn.execute(
            "SELECT data FROM api_cache WHERE service = ? AND cache_key = ? AND fetched_at >= ?",
            [service, key, not_before],
        ).fetchone()
        return None if row is None else json.loads(row["data"])

    def cache_put(self, service: str, key: str, data: Any, *, fetched_at: float) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO api_cache (service, cache_key, data, fetched_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (service, cache_key) DO UPDATE SET data = excluded.data,"
                " fetched_at = excluded.fetched_at",
                [service, key, json.dumps(data, ensure_ascii=False), fetched_at],
            )

    def notification_ref(self, key: str) -> str | None:
        """The reference (e.g. Slack ts) of a notification already sent under ``key``, else None."""
        row = self.conn.execute("SELECT ref FROM notifications WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row["ref"])

    def record_notification(self, key: str, *, notifier: str, target: str, ref: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO notifications (key, notifier, target, ref, sent_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [key, notifier, target, ref, utc_now()],
            )

    def claim_notification(self, key: str, *, notifier: str, target: str = "") -> bool:
        """Record ``key`` as sent unless it already is; True when this caller claimed it (send once,
        across processes). ``release_notification`` undoes a claim whose delivery failed."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO notifications (key, notifier, target, ref, sent_at)"
                " VALUES (?, ?, ?, '', ?)",
                [key, notifier, target, utc_now()],
            )
            return cur.rowcount == 1

    def release_notification(self, key: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM notifications WHERE key = ?", [key])

    # ----------------------------------------------------------------- shared rate limits (issue 18)
    def take_token(self, name: str, *, capacity: int, per_s: float, now: float) -> float:
        """A token bucket shared by every process using this store (one row per bucket, updated in
        one IMMEDIATE transaction): take a token and return 0.0, or return the seconds until one is
        available (nothing taken). ``now`` is wall-clock seconds (time.time)."""
        with self.transaction():
            row = self.conn.execute(
                "SELECT tokens, updated_at, blocked_until FROM rate_buckets WHERE name = ?", [name]
            ).fetchone()
            tokens, last, blocked = (float(capacity), now, 0.0) if row is None else tuple(row)
            if now < blocked:
                return blocked - now
            tokens = min(float(capacity), tokens + max(0.0, now - last) * capacity / per_s)
            wait = 0.0 if tokens >= 1 else (1 - tokens) * per_s / capacity
            if wait == 0.0:
                tokens -= 1
            self.conn.execute(
                "INSERT INTO rate_buckets (name, tokens, updated_at, blocked_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens,"
                " updated_at = excluded.updated_at, blocked_until = excluded.blocked_until",
                [name, tokens, now, blocked],
            )
            return wait

    def block_bucket(self, name: str, *, until: float, now: float) -> None:
        """Empty the bucket until ``until`` (the service said its quota is spent)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO rate_buckets (name, tokens, updated_at, blocked_until) VALUES (?, 0, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET tokens = 0, updated_at = excluded.updated_at,"
                " blocked_until = excluded.blocked_until",
                [name, now, until],
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
        self._check_backup(source)
        # Migrate a private copy first: the live store is written only once the copy is a good,
        # current store (a failure anywhere before leaves it exactly as it was).
        import tempfile

        fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=".restore-", suffix=".db")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            copy = sqlite3.connect(tmp)
            try:
                src.backup(copy)
            finally:
                src.close()
                copy.close()
            staged = Store(tmp)
            try:
                staged.migrate()
                staged.conn.backup(self.conn)
            finally:
                staged.close()
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"backup {source} cannot be restored ({exc}); nothing restored") from None
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    @staticmethod
    def _check_backup(source: Path) -> None:
        """Refuse (IntegrityError, exit 3) a file that is not a sound stageflow store: not SQLite,
        damaged, or another application's database (its tables are not stageflow's at its version)."""
        try:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise IntegrityError(f"backup {source} cannot be opened ({exc}); nothing restored") from None
        try:
            ok = src.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise IntegrityError(
                    f"backup {source} fails SQLite's integrity check ({ok}); nothing restored"
                )
            version = int(src.execute("PRAGMA user_version").fetchone()[0])
            if version > LATEST_VERSION:
                raise BadInput(f"backup {source} has schema {version}, newer than this stageflow: upgrade")
            found = schema_of(src)
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(
                f"backup {source} is not a readable SQLite database ({exc}); nothing restored: "
                "pass a .db file written by `stageflow db backup`"
            ) from None
        finally:
            src.close()
        expected = expected_schema(version)
        wrong = sorted(t for t, cols in expected.items() if found.get(t) != cols)
        if version < 1 or wrong:
            detail = f"schema version {version}" if version < 1 else f"tables {', '.join(wrong[:3])} differ"
            raise IntegrityError(
                f"backup {source} is not a stageflow store ({detail}); nothing restored: "
                "pass a .db file written by `stageflow db backup`"
            )


def open_store(path: Path | None = None, *, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store at ``path`` or ``$STAGEFLOW_HOME/stageflow.db``."""
    store = Store(path or settings.store_path())
    if migrate:
        store.migrate()
    return store
