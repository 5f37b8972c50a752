"""`stageflow db restore` with a bad backup whose checksum file was recomputed to match: another
application's SQLite database, junk bytes, a truncated backup. Each is exit 3 with one line, and
the live store is untouched and still usable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stageflow.store import open_store, sha256_file


def _with_checksum(path: Path) -> Path:
    path.with_name(path.name + ".sha256").write_text(f"{sha256_file(path)}  {path.name}\n")
    return path


def _foreign(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); PRAGMA user_version = 1;")
    conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    conn.commit()
    conn.close()
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(b"this is not a database\n" * 200)
    return path


def _truncated(path: Path) -> Path:
    store = open_store()
    for i in range(300):
        store.mark_seen("rss", [{"item_id": f"x{i}" * 20}])
    store.backup(path)
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    return path


@pytest.mark.parametrize("make", [_foreign, _junk, _truncated], ids=["foreign", "junk", "truncated"])
def test_bad_backup_is_exit_3_and_the_store_survives(cli, tmp_path: Path, make) -> None:
    store = open_store()
    store.mark_seen("rss", [{"item_id": "live-item"}])
    store.close()
    backup = _with_checksum(make(tmp_path / "backup.db"))
    code, out, err = cli("db", "restore", backup)
    assert code == 3, out + err
    lines = [ln for ln in err.splitlines() if ln.startswith("stageflow: error:")]
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err
    assert str(backup) in lines[0]
    store = open_store()  # the live store still opens, migrates and holds its data
    assert store.unseen("rss", ["live-item"]) == set()
    store.close()
    code, _, err = cli("db", "backup", tmp_path / "after.db")
    assert code == 0, err
