"""The stageflow store's schema: versioned migrations kept in code, applied in order by
:meth:`stageflow.store.Store.migrate` (``PRAGMA user_version`` records the last one applied).

One schema for the whole store: each family (video: videos, candidates, status_history; services:
api_calls, api_cache, rate_buckets; notifications; monitor state) owns the methods that read and
write its tables, but their tables are declared here, in one ordered list, so a backup's schema can
be checked against any version and migrations never race between families.
"""

from __future__ import annotations

import sqlite3

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
    (
        3,
        """
        CREATE TABLE videos (
            video_id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}',
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE candidates (
            id TEXT PRIMARY KEY,
            video_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL,
            status TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (video_id, start_ms, end_ms)
        );
        CREATE INDEX candidates_by_status ON candidates (status);
        CREATE TABLE status_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            candidate_id TEXT NOT NULL REFERENCES candidates (id),
            old_status TEXT,
            new_status TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        );
        CREATE INDEX status_history_by_candidate ON status_history (candidate_id);
        CREATE TABLE api_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            http_status INTEGER,
            ok INTEGER NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX api_calls_by_service ON api_calls (service, at);
        CREATE TABLE api_cache (
            service TEXT NOT NULL,
            cache_key TEXT NOT NULL,
            data TEXT NOT NULL,
            fetched_at REAL NOT NULL,
            PRIMARY KEY (service, cache_key)
        );
        CREATE TABLE notifications (
            key TEXT PRIMARY KEY,
            notifier TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            ref TEXT NOT NULL DEFAULT '',
            sent_at TEXT NOT NULL
        )
        """,
    ),
    (
        4,
        """
        CREATE TABLE channels (
            channel_id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            subscribers INTEGER,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE channel_videos (
            channel_id TEXT NOT NULL REFERENCES channels (channel_id),
            video_id TEXT NOT NULL,
            published TEXT,
            views INTEGER,
            ratings INTEGER,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (channel_id, video_id)
        );
        CREATE INDEX channel_videos_by_video ON channel_videos (video_id)
        """,
    ),
    (
        5,
        """
        CREATE TABLE rate_buckets (
            name TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            updated_at REAL NOT NULL,
            blocked_until REAL NOT NULL DEFAULT 0
        )
        """,
    ),
    (
        6,
        # #19: the status 'filtered_no_coupang' is 'no_commerce_match' (any commerce backend): stored
        # candidates, their status history and the sqlite sink's candidate records follow
        """
        UPDATE candidates SET status = 'no_commerce_match' WHERE status = 'filtered_no_coupang';
        UPDATE candidates SET data = json_set(data, '$.status', 'no_commerce_match')
            WHERE json_valid(data) AND json_extract(data, '$.status') = 'filtered_no_coupang';
        UPDATE status_history SET old_status = 'no_commerce_match' WHERE old_status = 'filtered_no_coupang';
        UPDATE status_history SET new_status = 'no_commerce_match' WHERE new_status = 'filtered_no_coupang';
        UPDATE records SET data = json_set(data, '$.status', 'no_commerce_match')
            WHERE json_valid(data) AND json_extract(data, '$.status') = 'filtered_no_coupang'
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def schema_of(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Table -> column names of a database."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def expected_schema(version: int) -> dict[str, list[str]]:
    """The tables a stageflow store at ``version`` has (the migrations replayed in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        for v, sql in MIGRATIONS:
            if v > version:
                break
            for statement in (s.strip() for s in sql.split(";")):
                if statement:
                    conn.execute(statement)
        return schema_of(conn)
    finally:
        conn.close()
