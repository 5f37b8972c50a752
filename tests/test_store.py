"""The SQLite store: migrations, WAL, dedup, backup and checksum-verified restore."""

from __future__ import annotations

import os
import sqlite3

import pytest

from stageflow import settings
from stageflow.errors import IntegrityError, SettingsError
from stageflow.store import LATEST_VERSION, open_store
from stageflow.video.store import VideoStore


def test_migrate_creates_schema_in_wal_mode_and_is_idempotent(stageflow_home):
    store = open_store(migrate=False)
    assert store.migrate() == list(range(1, LATEST_VERSION + 1))
    assert store.migrate() == []
    assert store.version() == LATEST_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.path == stageflow_home / "stageflow.db"
    store.close()


def test_seen_items_dedup():
    store = open_store()
    assert store.unseen("rss", ["a", "b"]) == {"a", "b"}
    assert store.mark_seen("rss", [{"item_id": "a", "title": "A"}]) == 1
    assert store.mark_seen("rss", [{"item_id": "a", "title": "A again"}]) == 0
    assert store.unseen("rss", ["a", "b"]) == {"b"}
    assert store.unseen("folder", ["a"]) == {"a"}


def test_records_upsert_never_duplicates():
    store = open_store()
    store.upsert_records("videos", [{"id": "1", "v": 1}, {"id": "2", "v": 1}], key="id")
    store.upsert_records("videos", [{"id": "1", "v": 2}], key="id")
    assert store.records("videos") == [{"id": "1", "v": 2}, {"id": "2", "v": 1}]


def test_transaction_rolls_back_on_error():
    store = open_store()
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES ('k', 'v')")
            raise RuntimeError("boom")
    assert store.conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0


def test_backup_and_restore_round_trip(tmp_path):
    store = open_store()
    store.mark_seen("rss", [{"item_id": "keep"}])
    checksum = store.backup(tmp_path / "bk" / "store.db")
    assert checksum.read_text().split()[1] == "store.db"
    store.mark_seen("rss", [{"item_id": "after-backup"}])
    store.restore(tmp_path / "bk" / "store.db")
    assert store.unseen("rss", ["keep", "after-backup"]) == {"after-backup"}


def test_backup_into_directory_names_the_file(tmp_path):
    store = open_store()
    (tmp_path / "bk").mkdir()
    checksum = store.backup(tmp_path / "bk")
    assert checksum.name.startswith("stageflow-") and checksum.name.endswith(".db.sha256")


def test_restore_with_mismatched_checksum_is_refused_and_changes_nothing(tmp_path):
    store = open_store()
    store.mark_seen("rss", [{"item_id": "old"}])
    backup = tmp_path / "store.db"
    store.backup(backup)
    store.mark_seen("rss", [{"item_id": "live"}])
    with open(backup, "r+b") as fh:  # corrupt one byte of the backup
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError, match="does not match store.db.sha256") as err:
        store.restore(backup)
    assert err.value.exit_code == 3
    assert store.unseen("rss", ["old", "live"]) == set()


def test_restore_without_checksum_file_is_refused(tmp_path):
    store = open_store()
    backup = tmp_path / "store.db"
    store.backup(backup)
    (tmp_path / "store.db.sha256").unlink()
    with pytest.raises(IntegrityError, match="is missing"):
        store.restore(backup)


def test_newer_schema_is_refused(stageflow_home):
    open_store().close()
    conn = sqlite3.connect(stageflow_home / "stageflow.db")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.close()
    with pytest.raises(Exception, match="newer than this stageflow"):
        open_store()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see test below")
def test_home_not_writable_permissions(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    monkeypatch.setenv("STAGEFLOW_HOME", str(ro))
    with pytest.raises(SettingsError, match="is not writable"):
        settings.home()


def test_home_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("STAGEFLOW_HOME", str(blocker / "home"))
    with pytest.raises(SettingsError) as err:
        settings.home()
    assert str(err.value).startswith(f"STAGEFLOW_HOME={blocker / 'home'} is not writable")
    assert "set STAGEFLOW_HOME to a writable directory" in str(err.value)
    assert err.value.exit_code == 2


def test_migration_4_adds_channel_tables_to_a_version_3_store_keeping_its_rows():
    from stageflow.store import MIGRATIONS

    store = open_store(migrate=False)
    for version, sql in MIGRATIONS[:3]:  # a store as stageflow with schema 3 left it
        with store.transaction():
            for statement in (s.strip() for s in sql.split(";")):
                if statement:
                    store.conn.execute(statement)
            store.conn.execute(f"PRAGMA user_version = {version}")
    VideoStore(store).upsert_video("v1", title="kept", data={})
    assert store.migrate()[0] == 4  # later migrations may follow
    assert VideoStore(store).videos() == [{"video_id": "v1", "title": "kept", "source": ""}]
    cols = {r[1] for r in store.conn.execute("PRAGMA table_info(channel_videos)")}
    assert cols == {"channel_id", "video_id", "published", "views", "ratings", "seen_at"}
    assert {r[1] for r in store.conn.execute("PRAGMA table_info(channels)")} == {
        "channel_id", "title", "subscribers", "updated_at",
    }  # fmt: skip
    store.close()


def test_migration_6_renames_filtered_no_coupang_in_an_old_store(stageflow_home):
    """A store written before #19 holds candidates, history and sink records in the old status; opened
    by this stageflow they read 'no_commerce_match', and the review move out of it still works."""
    from stageflow.store import MIGRATIONS
    from stageflow.video.analysis.routing import Status

    stageflow_home.mkdir(parents=True, exist_ok=True)
    path = stageflow_home / "old.db"
    store = open_store(path, migrate=False)
    for version, sql in MIGRATIONS[:5]:  # a store as stageflow with schema 5 left it
        with store.transaction():
            for statement in (s.strip() for s in sql.split(";")):
                if statement:
                    store.conn.execute(statement)
            store.conn.execute(f"PRAGMA user_version = {version}")
    for cid in ("v1:0-5", "v1:5-9"):
        VideoStore(store).upsert_candidate(
            cid, video_id="v1", start=0 if cid.endswith("0-5") else 5, end=9, data={}
        )
    with store.transaction():  # what the old engine wrote: pending -> ... -> filtered_no_coupang
        for old, new in [
            ("pending", "processing"),
            ("processing", "analysis_complete"),
            ("analysis_complete", "filtered_no_coupang"),
        ]:
            store.conn.execute(
                "INSERT INTO status_history (candidate_id, old_status, new_status, actor, reason, at)"
                " VALUES ('v1:0-5', ?, ?, 'engine', '', 'then')",
                [old, new],
            )
        store.conn.execute("UPDATE candidates SET status = 'filtered_no_coupang' WHERE id = 'v1:0-5'")
        store.conn.execute("UPDATE candidates SET status = 'needs_review' WHERE id = 'v1:5-9'")
    store.upsert_records(
        "candidates",
        [{"id": "v1:0-5", "status": "filtered_no_coupang", "product_name": "다이슨"},
         {"id": "v1:5-9", "status": "needs_review"}],
        key="id",
    )  # fmt: skip
    store.close()

    store = open_store(path)  # migrates
    assert store.version() == LATEST_VERSION
    assert VideoStore(store).candidate_status("v1:0-5") == "no_commerce_match"
    assert VideoStore(store).candidate_status("v1:5-9") == "needs_review"
    history = [(h["old_status"], h["new_status"]) for h in VideoStore(store).status_history("v1:0-5")]
    assert history[-1] == ("analysis_complete", "no_commerce_match")
    assert "filtered_no_coupang" not in str(history)
    assert [r["status"] for r in store.records("candidates")] == ["no_commerce_match", "needs_review"]
    assert store.records("candidates")[0]["product_name"] == "다이슨"
    # the old name still works where people type it: a filter, a move (e.g. a review sheet's cell)
    assert [c["id"] for c in VideoStore(store).candidates(status="filtered_no_coupang")] == ["v1:0-5"]
    assert Status("filtered_no_coupang") is Status.NO_COMMERCE_MATCH
    assert (
        VideoStore(store).set_candidate_status("v1:0-5", "needs_review", actor="reviewer") == "needs_review"
    )
    store.close()
    assert open_store(path).migrate() == []  # idempotent
