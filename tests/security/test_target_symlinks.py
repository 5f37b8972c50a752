"""Symlink and special-file games on a local target: a symlinked directory is never written or
deleted through (it is replaced by a real directory, as rsync does), a symlinked ``.stageflow`` is
refused, and a FIFO, a huge file, an unreadable or a non-UTF-8 file as the role marker is a clear
exit 3 instead of a hang or an internal error."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest


def _init(cli, project) -> None:
    code, _, err = cli("target", "init", project.target, "--role", "apiserver")
    assert code == 0, err


def _one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("stageflow: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_symlinked_directory_on_target_is_replaced_not_followed(cli, project, tmp_path: Path) -> None:
    project.env()
    _init(cli, project)
    outside = tmp_path / "outside"
    (outside / "web").mkdir(parents=True)
    (outside / "web" / "page.js").write_text("someone else's file\n")
    (outside / "web" / "old.js").write_text("keep me\n")
    os.symlink(outside, project.target / "apps")  # planted: target/apps -> outside
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (outside / "web" / "page.js").read_text() == "someone else's file\n"
    assert sorted(p.name for p in (outside / "web").iterdir()) == ["old.js", "page.js"]
    assert not (project.target / "apps").is_symlink()
    assert (project.target / "apps" / "web" / "page.js").read_text() == "web\n"


def test_delete_through_symlinked_directory_touches_nothing_outside(cli, project, tmp_path: Path) -> None:
    project.env()
    _init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    outside = tmp_path / "outside"
    (outside / "web").mkdir(parents=True)
    (outside / "web" / "page.js").write_text("not ours\n")
    import shutil

    shutil.rmtree(project.target / "apps")
    os.symlink(outside, project.target / "apps")
    (project.source / "apps" / "web" / "page.js").unlink()
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (outside / "web" / "page.js").read_text() == "not ours\n"


def test_symlinked_state_dir_is_refused(cli, project, tmp_path: Path) -> None:
    project.env()
    other = tmp_path / "other-target"
    other.mkdir()
    code, _, err = cli("target", "init", other, "--role", "apiserver")
    assert code == 0, err
    project.target.mkdir()
    os.symlink(other / ".stageflow", project.target / ".stageflow")
    before = sorted(p.name for p in (other / ".stageflow").iterdir())
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3
    assert "is a symlink" in _one_error(err)
    assert sorted(p.name for p in (other / ".stageflow").iterdir()) == before  # no lock, no manifest


def _with_timeout(fn, seconds: float = 60.0):
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the sync hung"
    return result[0]


@pytest.mark.parametrize("kind", ["fifo", "huge", "binary", "directory"])
def test_bad_role_marker_is_exit_3(cli, project, kind: str) -> None:
    project.env()
    marker = project.target / ".stageflow" / "role"
    marker.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(marker)
    elif kind == "huge":
        marker.write_text("apiserver\n" + "x" * 100_000)
    elif kind == "binary":
        marker.write_bytes(b"\xff\xfeapiserver\n")
    else:
        marker.mkdir()
    code, _, err = _with_timeout(lambda: cli("sync", project.source, "--env", "api"))
    assert code == 3, err
    line = _one_error(err)
    if kind != "directory":
        assert str(marker) in line


def test_unreadable_role_marker_is_exit_3(cli, hostile_user, others_python, shared_tmp: Path) -> None:
    """Run by a user who cannot read the marker: a clear refusal, not a traceback."""
    source, target = shared_tmp / "src", shared_tmp / "dst"
    (source / "app").mkdir(parents=True)
    (source / "app" / "a.js").write_text("a\n")
    (source / "stageflow.toml").write_text(
        f'[sync.environments.api]\nrole = "apiserver"\ntarget = "{target}"\n'
    )
    code, _, err = cli("target", "init", target, "--role", "apiserver")
    assert code == 0, err
    (target / ".stageflow" / "role").chmod(0o000)
    for d in (source, target, target / ".stageflow", source / "app"):
        d.chmod(0o755)
    home = shared_tmp / "hostile-home"
    home.mkdir()
    os.chown(home, hostile_user.uid, hostile_user.gid)
    python, env = others_python
    proc = hostile_user.run(
        [*python, "sync", str(source), "--env", "api", "--dry-run"],
        env={**os.environ, **env, "STAGEFLOW_HOME": str(home / "sf"), "HOME": str(home)},
        cwd=str(home),
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot read" in _one_error(proc.stderr)
