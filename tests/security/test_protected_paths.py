"""A protected path on the target is never removed or replaced, whatever type the source has there
(a file, a symlink or a directory named like the protected directory), with either transport."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stageflow.plugin_manager import get_plugin_manager
from stageflow.sync.manifest import ChangeSet


def _init(cli, project) -> None:
    code, _, err = cli("target", "init", project.target, "--role", "apiserver")
    assert code == 0, err


def _photos(target: Path) -> None:
    (target / "uploads").mkdir(parents=True, exist_ok=True)
    (target / "uploads" / "photo.jpg").write_bytes(b"\xff\xd8user photo")


@pytest.mark.parametrize("kind", ["file", "symlink"])
@pytest.mark.parametrize("transport", ["local", "rsync"])
def test_source_file_or_link_named_like_a_protected_dir(cli, project, kind: str, transport: str) -> None:
    if transport == "rsync" and shutil.which("rsync") is None:
        pytest.skip("rsync not installed")
    project.env(protect='["uploads/"]', transport=f'"{transport}"')
    _init(cli, project)
    _photos(project.target)
    if kind == "file":
        project.write("uploads", "a file where the target has user uploads\n")
    else:
        os.symlink("apps", project.source / "uploads")
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (project.target / "uploads" / "photo.jpg").read_bytes() == b"\xff\xd8user photo"
    assert (project.target / "uploads").is_dir() and not (project.target / "uploads").is_symlink()


def test_rsync_refusal_says_why(tmp_path: Path) -> None:
    """When rsync cannot replace a non-empty directory, the error names rsync's reason."""
    if shutil.which("rsync") is None:
        pytest.skip("rsync not installed")
    src, dst = tmp_path / "s", tmp_path / "d"
    src.mkdir()
    (src / "thing").write_text("file")
    (dst / "thing").mkdir(parents=True)
    (dst / "thing" / "keep").write_text("k")
    transport = get_plugin_manager().build("transports", "rsync", {})
    changes = ChangeSet(added=["thing"])
    from stageflow.errors import JobFailed

    with pytest.raises(JobFailed) as info:
        transport.send(src, str(dst), changes)
    message = str(info.value)
    assert "some files/attrs were not transferred" not in message
    assert "non-empty directory" in message or "could not make way" in message
    assert subprocess.run(["test", "-f", str(dst / "thing" / "keep")]).returncode == 0


@pytest.mark.parametrize("key", ["exclude_from", "filter_from"])
@pytest.mark.parametrize("transport", ["local", "rsync"])
def test_include_rules_never_bring_back_a_protected_path(cli, project, key: str, transport: str) -> None:
    """rsync-style ``+`` rules (which re-include what a later rule excludes) cannot reach a protected
    path: protect is checked apart from the rule file, so the server's ``.env`` and ``uploads/`` stay
    as they are while every other included file ships."""
    if transport == "rsync" and shutil.which("rsync") is None:
        pytest.skip("rsync not installed")
    rules = project.write("deploy.rules", "+ .env\n+ uploads/***\n+ */\n+ *\n")
    project.env(protect='[".env", "uploads/"]', transport=f'"{transport}"', **{key: f'"{rules}"'})
    _init(cli, project)
    _photos(project.target)
    (project.target / ".env").write_text("SECRET=server\n")
    project.write(".env", "SECRET=laptop\n")
    project.write("uploads/new.jpg", "from the source tree")
    project.write("README.md", "hello\n")
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (project.target / ".env").read_text() == "SECRET=server\n"
    assert (project.target / "uploads" / "photo.jpg").read_bytes() == b"\xff\xd8user photo"
    assert not (project.target / "uploads" / "new.jpg").exists()
    assert (project.target / "README.md").read_text() == "hello\n"
