"""``fsmonitor = "watchman"``: the git accelerator's ``git status`` asks a real watchman (through git's
own fsmonitor-watchman hook) what changed. Its change sets must equal the full walk's over several
consecutive syncs of random edits, adds, deletes and renames, and without watchman (or with a failing
hook) the sync is the same, with one warning line. Each test runs its own watchman server (``TMPDIR``
moves watchman 4.x's state dir and socket), deletes its watch and shuts the server down."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.sync import gitscan

from .conftest import write_exe
from .test_git_accelerator import both, git, make_repo, run, same_but_mtime

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
needs_watchman = pytest.mark.skipif(
    shutil.which("watchman") is None, reason="needs the watchman binary (apt-get install watchman)"
)


def _watchman(*args: str) -> dict:
    proc = subprocess.run(["watchman", "--no-pretty", *args], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout or "{}")


@pytest.fixture
def watchman(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """A private watchman server for this test; yields a list the test appends watched roots to."""
    state = tempfile.mkdtemp(prefix="wm", dir="/tmp")  # short: the socket path lives under it
    monkeypatch.setenv("TMPDIR", state)
    pid = _watchman("get-pid").get("pid")  # starts the server
    assert pid, "watchman server did not start"
    roots: list[Path] = []
    try:
        yield roots
    finally:
        for root in roots:
            _watchman("watch-del", str(root))
        _watchman("shutdown-server")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def fsm_repo(cli, project):
    """Synced once without fsmonitor (no watchman reached here), then ``fsmonitor = "watchman"``."""
    excl = '["node_modules/", "*.log", "dist/", "stageflow.toml"]'  # the config edit below: not shipped
    project.env(exclude=excl, fsmonitor='"off"')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    run(project)
    project.env(exclude=excl, fsmonitor='"watchman"')
    return project


def _expected(project, snapshot) -> dict[str, bytes | str]:
    return {
        k: v
        for k, v in snapshot(project.source).items()
        if not k.startswith((".git/", "node_modules/"))
        and not k.endswith(".log")
        and "/dist/" not in k
        and k != "stageflow.toml"
    }


@needs_git
@needs_watchman
@pytest.mark.parametrize("seed", [11, 12])
def test_fsmonitor_accelerator_equals_walk_over_consecutive_syncs(watchman, fsm_repo, snapshot, seed) -> None:
    project = fsm_repo
    src = project.source
    watchman.append(src)
    rng = random.Random(seed)
    files = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()]
    keep = (".gitignore", "stageflow.toml")
    files = [f for f in files if not f.startswith((".git/", "node_modules/")) and f not in keep]
    for rnd in range(6):
        for counter in range(rng.randint(1, 6)):
            op = rng.choice(["edit", "add", "add-dir", "delete", "rename", "ignored", "commit"])
            tag = f"{rnd}-{counter}"
            if op == "edit" and files:
                project.write(rng.choice(files), f"edit {tag}\n")
            elif op == "add":
                files.append(f"apps/new {tag}.js")
                project.write(files[-1], f"n{tag}\n")
            elif op == "add-dir":
                files.append(f"packages/p{tag}/deep/ü{tag}.txt")
                project.write(files[-1], f"d{tag}\n")
            elif op == "delete" and files:
                victim = files.pop(rng.randrange(len(files)))
                (src / victim).unlink()
            elif op == "rename" and files:
                old = files.pop(rng.randrange(len(files)))
                new = f"moved/{tag}/{Path(old).name}"
                (src / new).parent.mkdir(parents=True, exist_ok=True)
                (src / old).rename(src / new)
                files.append(new)
            elif op == "ignored":  # ignored and excluded: never ships
                project.write(f"packages/lib/dist/o{tag}.js", f"o{tag}\n")
            else:
                git(src, "add", "-A")
                git(src, "commit", "-qm", f"c{tag}", "--allow-empty")
        fast, slow, res = both(project)
        assert res.accelerator == "git", res.accelerator_reason
        assert not [w for w in res.warnings if "fsmonitor" in w], res.warnings
        same_but_mtime(project, fast, slow)
        real = run(project)
        assert real.changes.as_dict() == fast
        assert snapshot(project.target) == _expected(project, snapshot)
        assert run(project).changes.as_dict() == {"added": [], "modified": [], "deleted": []}
    # git really used the hook: the index keeps watchman's clock, and watchman watches the source.
    assert b"FSMN" in (src / ".git" / "index").read_bytes()
    roots = [os.path.realpath(r) for r in _watchman("watch-list").get("roots", [])]
    assert os.path.realpath(src) in roots


@needs_git
def test_without_watchman_one_warning_and_a_correct_sync(fsm_repo, snapshot, tmp_path, monkeypatch) -> None:
    project = fsm_repo
    bin_dir = tmp_path / "bin"  # PATH with git only: no watchman
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(bin_dir))
    project.write("apps/web/page.js", "changed\n")
    project.write("apps/added.js", "added\n")
    res = run(project)
    assert res.accelerator == "git", res.accelerator_reason
    assert [w for w in res.warnings if "fsmonitor" in w] == [
        "fsmonitor: watchman is not installed; git status scans the tree"
    ]
    expected = {"added": ["apps/added.js"], "modified": ["apps/web/page.js"], "deleted": []}
    assert res.changes.as_dict() == expected
    assert snapshot(project.target) == _expected(project, snapshot)


@needs_git
@pytest.mark.parametrize("hook", ["fails", "missing"])
def test_failing_hook_one_warning_and_a_correct_sync(
    cli, fsm_repo, snapshot, tmp_path, monkeypatch, hook
) -> None:
    project = fsm_repo
    script = tmp_path / "query-watchman"
    if hook == "fails":
        body = 'echo "Watchman: boom." >&2\necho "Falling back to scanning..." >&2\nexit 1\n'
        write_exe(script, "#!/bin/sh\n" + body)
    monkeypatch.setattr(gitscan, "_hook_cache", {"hook": str(script)})
    real_which = shutil.which
    fake_which = lambda name, *a: name if name == "watchman" else real_which(name)  # noqa: E731
    monkeypatch.setattr(gitscan.shutil, "which", fake_which)
    for rnd in range(2):
        project.write("apps/web/page.js", f"changed {rnd}\n")
        res = run(project)
        assert res.accelerator == "git", res.accelerator_reason
        warned = [w for w in res.warnings if "fsmonitor" in w]
        assert len(warned) == 1 and "the watchman hook failed" in warned[0], res.warnings
        assert "boom" in warned[0] if hook == "fails" else "query-watchman" in warned[0]
        assert res.changes.as_dict() == {"added": [], "modified": ["apps/web/page.js"], "deleted": []}
        assert snapshot(project.target) == _expected(project, snapshot)
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0
    assert len([line for line in (out + err).splitlines() if "fsmonitor" in line]) == 1


@needs_git
def test_fsmonitor_not_used_when_ignored_listing_is_needed(cli, project, monkeypatch) -> None:
    project.env(exclude='["node_modules/", "*.log"]')  # dist/ is ignored by git but shipped
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    run(project)
    project.env(exclude='["node_modules/", "*.log"]', fsmonitor='"watchman"')
    monkeypatch.setattr(gitscan, "fsmonitor_hook", lambda: pytest.fail("the hook is not looked up"))
    res = run(project)
    assert res.accelerator == "git"
    assert [w for w in res.warnings if "fsmonitor" in w] == [
        "fsmonitor: not used: git status needs --ignored here (a git ignore line that is not also an "
        "exclude rule, or GIT_OPTIONAL_LOCKS=0)"
    ]


def test_fsmonitor_config_section_default_environment_override_and_errors(cli, project) -> None:
    from stageflow.sync.profile import SyncConfig

    cfg = SyncConfig.model_validate(
        {
            "fsmonitor": "watchman",
            "environments": {"a": {"role": "r"}, "b": {"role": "r", "fsmonitor": "off"}},
        }
    )
    assert cfg.fsmonitor_for(cfg.environments["a"]) == "watchman"
    assert cfg.fsmonitor_for(cfg.environments["b"]) == "off"
    assert SyncConfig.model_validate({"environments": {"a": {"role": "r"}}}).fsmonitor == "off"
    assert gitscan.StatusRun(project.source, fsmonitor="off").fsmonitor is None

    project.env(fsmonitor='"inotify"')
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code != 0
    assert "stageflow.toml:4" in out + err and "fsmonitor" in out + err, out + err
    project.config('[sync]\nfsmonitor = true\n[sync.environments.api]\nrole = "apiserver"\n')
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code != 0
    assert "stageflow.toml:2" in out + err and "sync.fsmonitor" in out + err, out + err
