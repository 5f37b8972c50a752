"""The inotify detector (stageflow.sync.notify) against the real kernel: the change set of a sync that
asks it must equal the full walk's (random edits, renamed and removed directories, links, commits,
reverts, and edits made while a sync runs); every doubt (a token from another server instance, a
queue overflow, the watch budget, a moved source) falls back to git saying why; and through the real
sync server a third sync is answered by the server's watch."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stageflow.fast import sync_server as server
from stageflow.fast.sync_cli import load_request
from stageflow.sync import notify
from stageflow.sync.engine import sync

from .test_git_accelerator import expected_tree, git, make_repo

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


class InProcessServer:
    """The server's half (a Registry answering on a socket pair), in a thread of the test."""

    def __init__(self) -> None:
        self.registry = notify.Registry()
        self.ours, self.theirs = socket.socketpair()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while notify.serve_channel(self.registry, self.ours):
            pass

    def close(self) -> None:
        self.theirs.close()
        self.thread.join(30)
        self.ours.close()
        self.registry.close()


@pytest.fixture
def served(monkeypatch):
    srv = InProcessServer()
    monkeypatch.setattr(notify, "CHANNEL", srv.theirs)
    yield srv
    srv.close()


def run(project, *, git_on: bool = True, dry: bool = False, on_changes=None):
    return sync(load_request(project.source, "api", dry_run=dry, use_git=git_on), on_changes=on_changes)


@pytest.fixture
def watched(cli, project, served):
    project.env(exclude='["node_modules/", "*.log"]')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    first = run(project)
    assert first.accelerator == "walk"  # no baseline yet; the server's token is recorded
    return project


def test_second_sync_asks_the_watch_and_ships_only_the_change(watched, snapshot) -> None:
    watched.write("packages/lib/lib.js", "v2\n")
    watched.write("node_modules/dep/index.js", "churn\n")  # excluded: looked at, never shipped
    res = run(watched)
    assert res.accelerator == "inotify" and res.accelerator_reason is None
    assert res.changes.as_dict() == {"added": [], "modified": ["packages/lib/lib.js"], "deleted": []}
    assert res.files_scanned == 1
    assert snapshot(watched.target) == expected_tree(watched, snapshot)
    again = run(watched)
    assert again.accelerator == "inotify" and not again.changes and again.files_scanned == 0


NAMES = ["a.txt", "with space.js", "한글/파일.txt", "dir with space/é.js", "deep/x/y/z.ts", "new\nline.txt"]


def _files(src: Path) -> list[str]:
    out = []
    for p in src.rglob("*"):
        rel = p.relative_to(src).as_posix()
        if (p.is_file() or p.is_symlink()) and not rel.startswith(".git/") and rel != "stageflow.toml":
            out.append(rel)
    return sorted(out)


ALL_OPS = ["edit", "add", "delete", "rename-dir", "move-in", "rmdir", "link", "chmod", "commit", "revert"]
#: While a sync runs: no op that removes a file the transfer may be reading (that sync then fails).
DURING_OPS = ["edit", "add", "move-in", "link", "chmod", "commit"]


def _random_op(project, rng: random.Random, tag: str, ops: list[str] = ALL_OPS) -> None:
    src = project.source
    existing = _files(src)
    op = rng.choice(ops)
    if op == "edit" and existing:
        p = src / rng.choice(existing)
        if not p.is_symlink():
            p.write_bytes(p.read_bytes() + f" edit {tag}\n".encode())
    elif op == "add" or not existing:
        stem, _, ext = rng.choice(NAMES).rpartition(".")
        project.write(f"{stem}-{tag}.{ext}", f"new {tag}\n")
    elif op == "delete":
        (src / rng.choice(existing)).unlink()
    elif op == "rename-dir":
        old = Path(rng.choice(existing)).parent
        if str(old) != ".":
            (src / old).rename(src / f"moved-{tag}")
    elif op == "move-in":  # a tree made outside the source, then moved in whole
        outside = src.parent / f"outside-{tag}"
        (outside / "sub").mkdir(parents=True)
        (outside / "sub" / "f.txt").write_text(tag)
        (outside / "sub" / "empty").mkdir()
        outside.rename(src / f"in-{tag}")
    elif op == "rmdir":
        old = Path(rng.choice(existing)).parent
        if str(old) != ".":
            shutil.rmtree(src / old)
    elif op == "link":
        (src / f"link-{tag}").symlink_to(rng.choice(existing))
    elif op == "chmod" and existing:
        p = src / rng.choice(existing)
        if not p.is_symlink():
            p.chmod(p.stat().st_mode ^ 0o100)
    elif op == "commit":
        git(src, "add", "-A")
        git(src, "commit", "-qm", tag, "--allow-empty")
    elif op == "revert":
        git(src, "checkout", "-q", "--", ".")
        git(src, "clean", "-qfd", "-e", "stageflow.toml")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_inotify_equals_walk_with_edits_during_the_sync(watched, snapshot, seed: int) -> None:
    rng = random.Random(seed)
    for step in range(12):
        for n in range(rng.randint(1, 4)):
            _random_op(watched, rng, f"{step}-{n}")
        walk = run(watched, git_on=False, dry=True).changes.as_dict()
        during = rng.random() < 0.5

        def edit_during(_changes, step=step, during=during) -> None:  # after the scan, before the transfer
            if during:
                _random_op(watched, rng, f"{step}-during", DURING_OPS)

        res = run(watched, on_changes=edit_during)
        assert res.accelerator == "inotify", res.accelerator_reason
        got = res.changes.as_dict()
        assert got["added"] == walk["added"] and got["deleted"] == walk["deleted"]
        # The walk also lists files whose mtime alone changed (rewritten with the same bytes).
        assert set(got["modified"]) <= set(walk["modified"])
        if not during:
            assert snapshot(watched.target) == expected_tree(watched, snapshot)
    # Whatever changed during the last syncs is seen by the next one.
    res = run(watched)
    assert res.accelerator == "inotify"
    assert snapshot(watched.target) == expected_tree(watched, snapshot)
    assert not run(watched, git_on=False, dry=True).changes


def test_a_token_from_another_server_instance_falls_back_to_git(watched, snapshot, served) -> None:
    root = os.path.realpath(watched.source)
    served.registry.drop(root)  # as if the server restarted: the next answer comes from a new watch
    watched.write("apps/web/page.js", "v2\n")
    res = run(watched)
    assert res.accelerator == "git" and "restarted" not in (res.accelerator_reason or "")
    assert res.changes.modified == ["apps/web/page.js"]
    watched.write("apps/web/page.js", "v3\n")
    res = run(watched)
    assert res.accelerator == "inotify" and res.changes.modified == ["apps/web/page.js"]
    assert snapshot(watched.target) == expected_tree(watched, snapshot)


def test_queue_overflow_falls_back_to_git_then_watches_again(watched, snapshot) -> None:
    with open("/proc/sys/fs/inotify/max_queued_events") as fh:
        limit = int(fh.read())
    if limit > 100_000:
        pytest.skip(f"max_queued_events={limit}: too many files to overflow it here")
    bulk = watched.source / "bulk"
    bulk.mkdir()
    res = run(watched)  # the new directory is watched from here on
    assert res.accelerator == "inotify"
    for i in range(limit + 100):  # never read by the registry in between: the queue overflows
        (bulk / f"f{i}").write_bytes(b"")
    res = run(watched)
    assert res.accelerator == "git"  # the overflow's doubt: git (which sees the untracked files)
    assert len(res.changes.added) == limit + 100
    watched.write("apps/web/page.js", "v2\n")
    res = run(watched)
    assert res.accelerator == "inotify" and res.changes.modified == ["apps/web/page.js"]
    assert snapshot(watched.target) == expected_tree(watched, snapshot)


def test_watch_budget_hit_falls_back_with_the_reason(cli, project, served, monkeypatch) -> None:
    monkeypatch.setenv(notify.BUDGET_ENV, "3")  # the fixture project has more directories than this
    project.env(exclude='["node_modules/", "*.log"]')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    run(project)
    project.write("apps/web/page.js", "v2\n")
    res = run(project)
    assert res.accelerator == "git" and res.changes.modified == ["apps/web/page.js"]
    tree = notify.Registry().answer({"root": os.path.realpath(project.source)})
    assert "more than 3 directories" in tree["reason"] and "max_user_watches" in tree["reason"]
    assert "token" not in tree


def test_source_moved_away_and_back_is_a_doubt(watched, snapshot, tmp_path) -> None:
    src = watched.source
    src.rename(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "apps/web/page.js").write_text("v2\n")
    (tmp_path / "elsewhere").rename(src)
    res = run(watched)
    assert res.accelerator == "git" and res.changes.modified == ["apps/web/page.js"]
    assert snapshot(watched.target) == expected_tree(watched, snapshot)


def test_tree_answers_directories_and_tokens(tmp_path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    tree = notify.Tree(str(tmp_path))
    try:
        assert tree.watches == 3  # root, a, a/b; never .git
        t0 = tree.token()
        (tmp_path / ".git" / "index").write_text("x")
        (tmp_path / "a" / "b" / "f").write_text("x")
        (tmp_path / "a" / "b").rename(tmp_path / "c")
        (tmp_path / "c" / "g").write_text("y")
        first = tree.since(t0)
        # c/g's event came on the moved directory's old watch: covered by walking "c" whole.
        assert "a/b/f" in first["changed"] and first["dirs"] == ["a/b", "c"]
        assert not any(p.startswith(".git") for p in first["changed"])
        (tmp_path / "c" / "h").write_text("z")  # the moved directory's new watch
        assert tree.since(first["token"])["changed"] == ["c/h"]
        first = tree.since(first["token"])
        again = tree.since(first["token"])
        assert again["changed"] == [] and again["dirs"] == []
        assert "restarted" in tree.since("ffffffffffff:0")["reason"]
        assert "no inotify token" in tree.since(None)["reason"]
    finally:
        tree.close()


# ------------------------------------------------------------------------------ the real sync server
STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))


def test_through_the_real_server_the_third_sync_is_answered_by_its_watch(cli, project, monkeypatch) -> None:
    from .test_server import sockets, wait_for

    monkeypatch.setenv(server.ENV, "60")
    project.env(exclude='["node_modules/", "*.log"]')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0

    def stageflow_sync() -> dict:
        done = subprocess.run(
            [STAGEFLOW, "sync", str(project.source), "--env", "api", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    try:
        assert stageflow_sync()["accelerator"] == "walk"  # in-process; leaves the server
        wait_for(lambda: len(sockets()) == 1, "the server's socket")
        project.write("apps/web/page.js", "v2\n")
        second = stageflow_sync()  # served: the watch starts, git answers this once
        assert second["accelerator"] == "git" and second["changes"]["modified"] == ["apps/web/page.js"]
        project.write("apps/web/page.js", "v3\n")
        os.mkdir(project.source / "newdir")
        project.write("newdir/deep/x.txt", "x\n")
        third = stageflow_sync()
        assert third["accelerator"] == "inotify", third["accelerator_reason"]
        assert third["changes"]["modified"] == ["apps/web/page.js"]
        assert third["changes"]["added"] == ["newdir/deep/x.txt"]
        assert stageflow_sync()["changes"] == {"added": [], "modified": [], "deleted": []}
    finally:
        server.stop_servers()
