"""File names that are not UTF-8 (b'caf\\xe9.txt', a Latin-1 tree copied from an old server) sync as
rsync syncs them: the bytes are kept, rules match them per byte, and changes and deletions follow.
Differential: the same tree (and the same exclude file) through real ``rsync -a --delete`` and
through ``stageflow sync`` on the local transport and on the rsync transport over a real sshd give
the same names (as bytes) with the same contents, after the first sync and after edits and deletions.
Before the fix every sync of such a tree died with ``internal error: UnicodeEncodeError``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

RSYNC = shutil.which("rsync")
pytestmark = pytest.mark.skipif(RSYNC is None, reason="needs the rsync binary (.ci/run installs it)")

#: Names as bytes: Latin-1, a lone 0xff, a UTF-8 name beside a Latin-1 one, an invalid sequence.
TREE = {
    b"caf\xe9.txt": b"latin-1 name",
    b"caf\xc3\xa9.txt": b"utf-8 name",
    b"d\xff/z": b"in a latin-1 directory",
    b"d\xff/sub/\xe8t\xe9": b"deeper",
    b"ok/\xc3\x28 invalid": b"an invalid two-byte sequence",
    b"ok/plain.js": b"plain",
    b"skip\xe8/x": b"excluded by a byte rule",
    b"logs\xe9/": b"",  # an empty directory
}
#: An exclude file with a non-UTF-8 pattern: rsync matches bytes, so must stageflow.
RULES = b"- skip\xe8/\n- *.t\xe9mp\n"


def make(root: Path, tree: dict[bytes, bytes]) -> None:
    base = os.fsencode(root)
    for rel, data in tree.items():
        path = os.path.join(base, rel)
        if rel.endswith(b"/"):
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def listing(root: Path) -> dict[bytes, bytes | None]:
    """Every file (its bytes) and directory (None) under root by byte name, .stageflow/ left out."""
    out: dict[bytes, bytes | None] = {}
    base = os.fsencode(root)
    for here, dirs, files in os.walk(base):
        rel = os.path.relpath(here, base)
        prefix = b"" if rel == b"." else rel + b"/"
        if not prefix:
            dirs[:] = [d for d in dirs if d != b".stageflow"]
        for d in dirs:
            out[prefix + d + b"/"] = None
        for f in files:
            if prefix + f not in (b"stageflow.toml", b"rules"):
                with open(os.path.join(here, f), "rb") as fh:
                    out[prefix + f] = fh.read()
    return out


def rsync(src: Path, dst: Path) -> dict[bytes, bytes | None]:
    subprocess.run(
        [RSYNC, "-a", "--delete", "--exclude=.git/", f"--exclude-from={src / 'rules'}", f"{src}/", f"{dst}/"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return listing(dst)


def edit(src: Path) -> None:
    base = os.fsencode(src)
    with open(os.path.join(base, b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"edited")
    shutil.rmtree(os.path.join(base, b"d\xff/sub"))
    os.unlink(os.path.join(base, b"ok/\xc3\x28 invalid"))
    make(src, {b"new \xe9\xe8/f\xf1": b"added", b"x.t\xe9mp": b"excluded"})


def run_both(cli, src: Path, target: str, local_dst: Path, ref: Path, config: Path) -> None:
    code, out, err = cli("sync", src, "--env", "e", "--config", config, "--no-git", "--json")
    assert code == 0 and "internal error" not in err, err
    doc = json.loads(out)
    assert "caf\udce9.txt" in doc["changes"]["added"]  # JSON output carries the name, escaped
    assert listing(local_dst) == rsync(src, ref)
    edit(src)
    code, out, err = cli("sync", src, "--env", "e", "--config", config, "--no-git", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["changes"]["modified"] == ["caf\udce9.txt"]
    assert "d\udcff/sub/\udce8t\udce9" in doc["changes"]["deleted"]
    expected = rsync(src, ref)
    assert b"new \xe9\xe8/f\xf1" in expected and b"x.t\xe9mp" not in expected
    assert listing(local_dst) == expected
    code, out, err = cli("sync", src, "--env", "e", "--config", config, "--no-git", "--json")
    assert code == 0 and json.loads(out)["changes"] == {"added": [], "modified": [], "deleted": []}, err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make(src, TREE)
    (src / "rules").write_bytes(RULES)
    return src


def write_config(tmp_path: Path, target: str, extra: str = "") -> Path:
    config = tmp_path / "stageflow.toml"
    config.write_text(
        f'[sync.environments.e]\nrole = "r"\ntarget = "{target}"\nexclude_from = "rules"\n{extra}',
        encoding="utf-8",
    )
    return config


def test_non_utf8_names_sync_locally_as_rsync_syncs_them(cli, tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert cli("target", "init", dst, "--role", "r")[0] == 0
    run_both(cli, tree, str(dst), dst, tmp_path / "ref", write_config(tmp_path, str(dst)))


def test_non_utf8_names_sync_with_git_accelerator(cli, tree: Path, tmp_path: Path) -> None:
    """The git path (``git status -z`` names are bytes too)."""
    git = ["git", "-C", str(tree), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], check=True)
    dst = tmp_path / "dst"
    config = write_config(tmp_path, str(dst))
    assert cli("target", "init", dst, "--role", "r")[0] == 0
    assert cli("sync", tree, "--env", "e", "--config", config)[0] == 0
    edit(tree)
    code, out, err = cli("sync", tree, "--env", "e", "--config", config, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["accelerator"] == "git" and doc["changes"]["modified"] == ["caf\udce9.txt"], doc
    assert listing(dst) == rsync(tree, tmp_path / "ref")


def _load_sshd_fixture():  # the real-sshd fixture of test_ssh.py, without duplicating it
    spec = importlib.util.spec_from_file_location("_sync_test_ssh", Path(__file__).with_name("test_ssh.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_ssh = _load_sshd_fixture()
sshd = _ssh.sshd


@pytest.fixture
def _masters_closed(sshd) -> Iterator[None]:
    yield
    from stageflow.sync.target import close_masters

    close_masters(sshd.ssh_command)


@pytest.mark.skipif(
    not os.path.exists(_ssh.SSHD) or shutil.which("ssh") is None, reason="needs openssh-server and client"
)
def test_non_utf8_names_sync_over_real_ssh_as_rsync_syncs_them(
    cli, tree: Path, tmp_path: Path, sshd, _masters_closed
) -> None:
    dst = tmp_path / "dst"
    remote = f"{sshd.user}@127.0.0.1:{dst}"
    config = write_config(tmp_path, remote, f'ssh_command = "{sshd.ssh_command}"\n')
    assert cli("target", "init", remote, "--role", "r", "--ssh-command", sshd.ssh_command)[0] == 0
    run_both(cli, tree, remote, dst, tmp_path / "ref", config)
