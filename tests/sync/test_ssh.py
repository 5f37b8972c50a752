"""The remote path against a real sshd on 127.0.0.1 (Debian openssh-server, started here with key
auth on a free port): rsync over ssh, the role check, lock, hooks and releases over one reused ssh
connection per sync. Skipped where /usr/sbin/sshd is not installed (CI installs openssh-server)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or shutil.which("ssh") is None, reason="needs openssh-server and openssh-client"
)


@dataclass
class Sshd:
    ssh_command: str
    user: str
    log: Path

    def accepted(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nPidFile {d / 'sshd.pid'}\nLogLevel INFO\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = d / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log.open("wb"))
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip(f"sshd did not start: {log.read_text()[-300:]}")
            time.sleep(0.05)
    ssh = (
        f"ssh -p {port} -i {d / 'client'} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR"
    )
    import getpass

    yield Sshd(ssh, getpass.getuser(), log)
    proc.terminate()
    proc.wait(timeout=10)


def test_sync_over_real_ssh_one_connection_per_sync(cli, project, sshd, snapshot) -> None:
    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    project.env(
        ssh_command=f'"{sshd.ssh_command}"',
        target=remote,
        exclude='["node_modules/", "*.log"]',
        hooks='[{ use = "shell", run = "echo $PWD > hook-pwd" }]',
    )
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "declares no role" in err  # the target dir does not exist yet over there
    code, _, err = cli("target", "init", remote, "--role", "apiserver", "--ssh-command", sshd.ssh_command)
    assert code == 0, err
    before = sshd.accepted()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    assert sshd.accepted() - before == 1  # role check, lock, rsync, manifest and hook share one connection
    doc = json.loads(out)
    assert "packages/lib/lib.js" in doc["changes"]["added"] and doc["bytes_sent"] > 0
    assert (project.target / "hook-pwd").read_text().strip() == str(project.target)
    project.write("packages/lib/lib.js", "v2\n")
    (project.source / "apps/web/page.js").unlink()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert doc["changes"] == {
        "added": [],
        "modified": ["packages/lib/lib.js"],
        "deleted": ["apps/web/page.js"],
    }
    expected = {
        k: v
        for k, v in snapshot(project.source).items()
        if not k.startswith("node_modules") and not k.endswith(".log")
    }
    expected["hook-pwd"] = (project.target / "hook-pwd").read_bytes()
    assert snapshot(project.target) == expected


def test_wrong_role_over_ssh_refused(cli, project, sshd) -> None:
    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    project.env(ssh_command=f'"{sshd.ssh_command}"', target=remote)
    assert cli("target", "init", remote, "--role", "webserver", "--ssh-command", sshd.ssh_command)[0] == 0
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "expected 'apiserver', found 'webserver'" in err
    assert sorted(os.listdir(project.target)) == [".stageflow"]


def test_releases_and_rollback_over_real_ssh(cli, project, sshd) -> None:
    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    project.env(ssh_command=f'"{sshd.ssh_command}"', target=remote, mode='"releases"')
    assert cli("target", "init", remote, "--role", "apiserver", "--ssh-command", sshd.ssh_command)[0] == 0
    assert cli("sync", project.source, "--env", "api")[0] == 0
    first = os.readlink(project.target / "current")
    project.write("packages/lib/lib.js", "v2\n")
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert (project.target / "current/packages/lib/lib.js").read_text() == "v2\n"
    code, _, err = cli("rollback", remote, "--ssh-command", sshd.ssh_command)
    assert code == 0, err
    assert os.readlink(project.target / "current") == first
    assert (project.target / "current/packages/lib/lib.js").read_text() == "lib\n"


def test_git_accelerator_over_real_ssh_journal_and_no_change(cli, project, sshd, snapshot) -> None:
    """The accelerator over ssh: a 1-file change appends one journal line (the base manifest is not
    re-sent) and a no-change sync writes nothing on the target."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    project.env(ssh_command=f'"{sshd.ssh_command}"', target=remote, exclude='["node_modules/", "*.log"]')
    project.write(".gitignore", "node_modules/\n*.log\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(project.source), *args], check=True, env=env, capture_output=True)
    assert cli("target", "init", remote, "--role", "apiserver", "--ssh-command", sshd.ssh_command)[0] == 0
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0 and json.loads(out)["accelerator"] == "walk", err
    base = (project.target / ".stageflow/manifest.json").read_bytes()
    project.write("packages/lib/lib.js", "v2\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["accelerator"] == "git", err
    assert doc["changes"]["modified"] == ["packages/lib/lib.js"]
    assert (project.target / ".stageflow/manifest.json").read_bytes() == base
    assert len((project.target / ".stageflow/manifest.journal").read_text().splitlines()) == 1
    before = snapshot(project.target, skip_state=False)
    accepted = sshd.accepted()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["accelerator"] == "git" and doc["changes"]["modified"] == []
    assert sshd.accepted() - accepted == 1  # the safety net still ran over ssh
    assert snapshot(project.target, skip_state=False) == before
