"""The watchman accelerator against a real watchman server (Debian's ``watchman``, installed by
.ci/run): its change set must equal the full walk's, it must fall back (to git, saying why) when
watchman cannot answer for the whole interval since the last sync, ``"auto"`` must never start a
watch on stageflow's account, and the git bookkeeping it carries must stay valid for a later
git-accelerated sync."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from stageflow.fast.sync_cli import load_request
from stageflow.sync.engine import sync

from .test_git_accelerator import expected_tree, git, make_repo

pytestmark = [
    pytest.mark.skipif(shutil.which("watchman") is None, reason="needs watchman (apt-get install watchman)"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


def wm(*command: object) -> dict:
    proc = subprocess.run(
        ["watchman", "-j", "--no-pretty"], input=json.dumps(list(command)).encode(), capture_output=True
    )
    return json.loads(proc.stdout or b"{}")


def watched_roots() -> list[str]:
    return list(wm("watch-list").get("roots") or [])


def run(project, *, git_on: bool = True, dry: bool = False):
    return sync(load_request(project.source, "api", dry_run=dry, use_git=git_on))


@pytest.fixture
def watched(cli, project):
    """A git repo synced once with ``watchman = true`` (walk: no baseline yet; the clock is recorded)."""
    project.env(exclude='["node_modules/", "*.log"]', watchman="true")
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    first = run(project)
    assert first.accelerator == "walk"
    root = os.path.realpath(project.source)
    assert root in watched_roots()
    yield project
    wm("watch-del", root)


def test_second_sync_asks_watchman_and_ships_only_the_change(watched, snapshot) -> None:
    watched.write("packages/lib/lib.js", "v2\n")
    watched.write("node_modules/dep/index.js", "churn\n")  # excluded: looked at, never shipped
    res = run(watched)
    assert res.accelerator == "watchman" and res.accelerator_reason is None
    assert res.changes.as_dict() == {"added": [], "modified": ["packages/lib/lib.js"], "deleted": []}
    assert res.files_scanned == 1
    assert snapshot(watched.target) == expected_tree(watched, snapshot)
    again = run(watched)
    assert again.accelerator == "watchman" and not again.changes and again.files_scanned == 0


NAMES = ["a.txt", "with space.js", "한글/파일.txt", "dir with space/é.js", "deep/x/y/z.ts", "new\nline.txt"]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_edits_watchman_equals_walk(watched, snapshot, seed: int) -> None:
    rng = random.Random(seed)
    src = watched.source

    def files() -> list[str]:
        out = []
        for p in src.rglob("*"):
            rel = p.relative_to(src).as_posix()
            if (p.is_file() or p.is_symlink()) and not rel.startswith(".git/") and rel != "stageflow.toml":
                out.append(rel)
        return sorted(out)

    for step in range(12):
        for n in range(rng.randint(1, 4)):
            tag = f"{step}-{n}"
            existing = files()
            op = rng.choice(["edit", "add", "delete", "rename-dir", "rmdir", "link", "commit", "revert"])
            if op == "edit" and existing:
                p = src / rng.choice(existing)
                if not p.is_symlink():
                    p.write_bytes(p.read_bytes() + f" edit {tag}\n".encode())
            elif op == "add" or not existing:
                stem, _, ext = rng.choice(NAMES).rpartition(".")
                watched.write(f"{stem}-{tag}.{ext}", f"new {tag}\n")
            elif op == "delete":
                (src / rng.choice(existing)).unlink()
            elif op == "rename-dir":
                old = Path(rng.choice(existing)).parent
                if str(old) != ".":
                    (src / old).rename(src / f"moved-{tag}")
            elif op == "rmdir":
                old = Path(rng.choice(existing)).parent
                if str(old) != ".":
                    shutil.rmtree(src / old)
            elif op == "link":
                (src / f"link-{tag}").symlink_to(rng.choice(existing))
            elif op == "commit":
                git(src, "add", "-A")
                git(src, "commit", "-qm", tag, "--allow-empty")
            elif op == "revert":
                git(src, "checkout", "-q", "--", ".")
                git(src, "clean", "-qfd", "-e", "stageflow.toml")
        walk = run(watched, git_on=False, dry=True).changes.as_dict()
        res = run(watched)
        assert res.accelerator == "watchman", res.accelerator_reason
        got = res.changes.as_dict()
        assert got["added"] == walk["added"] and got["deleted"] == walk["deleted"]
        # The walk also lists files whose mtime alone changed (rewritten with the same bytes).
        assert set(got["modified"]) <= set(walk["modified"])
        assert snapshot(watched.target) == expected_tree(watched, snapshot)


def _set_recorded_clock(project, clock: str) -> None:
    home = Path(os.environ["STAGEFLOW_HOME"]) / "sync"
    for db in home.glob("*.sqlite"):
        conn = sqlite3.connect(db)
        (text,) = conn.execute("SELECT v FROM meta WHERE k = 'state'").fetchone()
        meta = json.loads(text)
        if "watchman" in meta:
            meta["watchman"]["clock"] = clock
            conn.execute("UPDATE meta SET v = ? WHERE k = 'state'", (json.dumps(meta),))
            conn.commit()
        conn.close()


def test_clock_from_another_watchman_instance_falls_back_to_git(watched, snapshot) -> None:
    _set_recorded_clock(watched, "c:1:1:1:1")  # as if the server restarted since the last sync
    watched.write("apps/web/page.js", "v2\n")
    res = run(watched)
    assert res.accelerator == "git"
    assert res.changes.modified == ["apps/web/page.js"]
    assert snapshot(watched.target) == expected_tree(watched, snapshot)
    watched.write("apps/web/page.js", "v3\n")
    assert run(watched).accelerator == "watchman"  # the git sync recorded a fresh clock


def test_watch_removed_falls_back_and_auto_does_not_start_one(watched, snapshot) -> None:
    root = os.path.realpath(watched.source)
    wm("watch-del", root)
    watched.env(exclude='["node_modules/", "*.log"]')  # watchman = "auto" (the default)
    watched.write("apps/web/page.js", "v2\n")
    res = run(watched)
    assert res.accelerator == "git"
    assert res.changes.modified == ["apps/web/page.js", "stageflow.toml"]  # the config changed too
    assert root not in watched_roots()
    # An existing watch (here: one the user made) is used by "auto" once a clock is recorded.
    wm("watch-project", root)
    assert run(watched).accelerator == "git"  # records the clock
    watched.write("apps/web/page.js", "v3\n")
    res = run(watched)
    assert res.accelerator == "watchman" and res.changes.modified == ["apps/web/page.js"]


def test_git_sync_after_watchman_syncs_still_sees_a_reverted_edit(watched, snapshot) -> None:
    watched.write("packages/lib/lib.js", "edited\n")
    assert run(watched).accelerator == "watchman"
    git(watched.source, "checkout", "-q", "--", "packages/lib/lib.js")  # back to the committed text
    watched.env(exclude='["node_modules/", "*.log"]', watchman="false")
    res = run(watched)
    assert res.accelerator == "git"
    assert res.changes.modified == ["packages/lib/lib.js", "stageflow.toml"]
    assert snapshot(watched.target) == expected_tree(watched, snapshot)


def test_watchman_false_never_asks(cli, project) -> None:
    project.env(exclude='["node_modules/", "*.log"]', watchman="false")
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    run(project)
    project.write("apps/web/page.js", "v2\n")
    assert run(project).accelerator == "git"
    assert os.path.realpath(project.source) not in watched_roots()


def test_releases_mode_with_watchman_builds_the_new_release_from_the_change(cli, project, snapshot) -> None:
    project.env(exclude='["node_modules/", "*.log"]', watchman="true", mode='"releases"')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    try:
        first = run(project)
        assert first.accelerator == "walk" and first.release
        project.write("packages/lib/lib.js", "v2\n")
        (project.source / "apps/web/page.js").unlink()
        second = run(project)
        assert second.accelerator == "watchman" and second.release != first.release
        assert second.changes.as_dict() == {
            "added": [],
            "modified": ["packages/lib/lib.js"],
            "deleted": ["apps/web/page.js"],
        }
        assert snapshot(project.target / "current") == expected_tree(project, snapshot)
        # The previous release is untouched (hard links are never written through).
        old = snapshot(project.target / "releases" / first.release)
        assert old["packages/lib/lib.js"] == b"lib\n" and "apps/web/page.js" in old
    finally:
        wm("watch-del", os.path.realpath(project.source))


def test_bad_watchman_value_names_the_line_and_the_choices(cli, project) -> None:
    project.env(watchman='"sometimes"')
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and err.count("\n") == 1
    assert "stageflow.toml:4:" in err and 'watchman must be true, false or "auto"' in err
