"""The video family's rooms in the stageflow store: videos, candidates and their status history
(tables from migration 3, :mod:`stageflow.migrations`). A :class:`VideoStore` is a view over an open
kernel :class:`~stageflow.store.Store` and its connection; it opens and closes nothing itself::

    store = open_store()
    VideoStore(store).candidates(status="needs_review")

Status changes go through the status machine (:mod:`stageflow.video.analysis.routing`): an illegal
transition raises IllegalTransition and changes nothing; every change lands in status_history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stageflow.errors import BadInput
from stageflow.store import Store, utc_now
from stageflow.video.analysis.routing import canonical_status, check_transition


class VideoStore:
    """The video family's methods over ``store`` (its connection and transactions)."""

    def __init__(self, store: Store):
        self.store = store

    def upsert_video(
        self, video_id: str, *, title: str = "", source: str = "", data: Mapping[str, Any]
    ) -> None:
        now = utc_now()
        with self.store.transaction():
            self.store.conn.execute(
                "INSERT INTO videos (video_id, title, source, data, first_seen, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (video_id) DO UPDATE SET title = excluded.title,"
                " source = excluded.source, data = excluded.data, updated_at = excluded.updated_at",
                [video_id, title, source, json.dumps(data, default=str, ensure_ascii=False), now, now],
            )

    def upsert_candidate(
        self,
        candidate_id: str,
        *,
        video_id: str,
        start: float,
        end: float,
        data: Mapping[str, Any],
        actor: str = "engine",
    ) -> bool:
        """Insert a candidate in status 'pending' (recorded in status_history), or update its data
        keeping its status. Keyed by id (= video id + range). Returns True when it was created."""
        now = utc_now()
        payload = json.dumps(data, default=str, ensure_ascii=False)
        with self.store.transaction():
            row = self.store.conn.execute(
                "SELECT status FROM candidates WHERE id = ?", [candidate_id]
            ).fetchone()
            if row is not None:
                self.store.conn.execute(
                    "UPDATE candidates SET data = ?, updated_at = ? WHERE id = ?",
                    [payload, now, candidate_id],
                )
                return False
            self.store.conn.execute(
                "INSERT INTO candidates (id, video_id, start_ms, end_ms, status, data, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                [candidate_id, video_id, round(start * 1000), round(end * 1000), payload, now, now],
            )
            self.store.conn.execute(
                "INSERT INTO status_history (candidate_id, old_status, new_status, actor, reason, at)"
                " VALUES (?, NULL, 'pending', ?, 'created', ?)",
                [candidate_id, actor, now],
            )
            return True

    def candidate_status(self, candidate_id: str) -> str | None:
        row = self.store.conn.execute("SELECT status FROM candidates WHERE id = ?", [candidate_id]).fetchone()
        return None if row is None else str(row["status"])

    def set_candidate_status(
        self, candidate_id: str, new_status: str, *, actor: str, reason: str = ""
    ) -> str:
        """Move a candidate through the status machine (stageflow.video.analysis.routing); an illegal
        transition raises IllegalTransition and changes nothing. Every change lands in status_history."""
        with self.store.transaction():
            row = self.store.conn.execute(
                "SELECT status FROM candidates WHERE id = ?", [candidate_id]
            ).fetchone()
            if row is None:
                raise BadInput(f"candidate {candidate_id} is not in the store: check the id")
            old = str(row["status"])
            new = check_transition(old, new_status, what=f"candidate {candidate_id}")
            now = utc_now()
            self.store.conn.execute(
                "UPDATE candidates SET status = ?, updated_at = ? WHERE id = ?",
                [new.value, now, candidate_id],
            )
            self.store.conn.execute(
                "INSERT INTO status_history (candidate_id, old_status, new_status, actor, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [candidate_id, old, new.value, actor, reason, now],
            )
        return new.value

    def candidates(self, video_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM candidates WHERE 1=1", list[str]()
        if video_id is not None:
            sql, args = sql + " AND video_id = ?", [*args, video_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, canonical_status(status)]
        rows = self.store.conn.execute(sql + " ORDER BY video_id, start_ms, end_ms", args).fetchall()
        return [{**json.loads(r["data"]), "id": r["id"], "status": r["status"]} for r in rows]

    def candidate(self, candidate_id: str) -> dict[str, Any] | None:
        row = self.store.conn.execute("SELECT * FROM candidates WHERE id = ?", [candidate_id]).fetchone()
        return None if row is None else {**json.loads(row["data"]), "id": row["id"], "status": row["status"]}

    def status_history(self, candidate_id: str) -> list[dict[str, Any]]:
        rows = self.store.conn.execute(
            "SELECT old_status, new_status, actor, reason, at FROM status_history WHERE candidate_id = ?"
            " ORDER BY id",
            [candidate_id],
        ).fetchall()
        return [dict(r) for r in rows]

    def videos(self) -> list[dict[str, Any]]:
        rows = self.store.conn.execute(
            "SELECT video_id, title, source FROM videos ORDER BY video_id"
        ).fetchall()
        return [dict(r) for r in rows]


def video_store(store: Store | VideoStore) -> VideoStore:
    """``store`` as a VideoStore (a kernel Store is wrapped; a VideoStore is returned as it is)."""
    return store if isinstance(store, VideoStore) else VideoStore(store)
