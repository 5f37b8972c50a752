"""The remote path against a real sshd on 127.0.0.1 (Debian openssh-server, started here with key
auth on a free port): rsync over ssh, the role check, lock, hooks and releases over one reused ssh
connection per sync, and the persistent master that later syncs reuse (``ssh_persist``). Skipped
where /usr/sbin/sshd is not installed (CI installs openssh-server)."""

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

# Found on PATH first (tests/stress.sh puts a delaying shim there), then where Debian installs it.
SSHD = shutil.which("sshd", path=f"{os.environ.get('PATH', '')}:/usr/sbin") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or shutil.which("ssh") is None, reason="needs openssh-server and openssh-client"
)


@dataclass
class Sshd:
    ssh_command: str
    user: str
    log: Path

    def accepted(self) -> int:
        """ssh connections (authentications) so far."""
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def sessions(self) -> int:
        """Sessions (remote commands) so far, over any connection."""
        return self.log.read_text(errors="replace").count("Starting session")


def _proc_state(pid: int) -> str:
    """The state letter of a process ("" once it is gone); a killed master not yet reaped is "Z"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


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
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = d / "sshd.log"
    for _attempt in range(3):  # a free port can be taken by another process before sshd binds it
        port = _free_port()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
            f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PermitRootLogin prohibit-password\nPidFile {d / 'sshd.pid'}\nLogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n"  # tests/video/test_jobstore.py: job storage over sftp
        )
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log.open("wb"))
        deadline = time.monotonic() + 60  # generous: a busy machine starts sshd in seconds, not ms
        while proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"sshd did not listen within 60 s: {log.read_text()[-300:]}")
                time.sleep(0.05)
        if proc.poll() is None:
            break
        if "Address already in use" not in log.read_text(errors="replace"):
            pytest.fail(f"sshd did not start: {log.read_text()[-300:]}")
    else:
        pytest.fail(f"sshd found no free port: {log.read_text()[-300:]}")
    ssh = (
        f"ssh -p {port} -i {d / 'client'} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR"
    )
    import getpass

    yield Sshd(ssh, getpass.getuser(), log)
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture(autouse=True)
def _close_masters(sshd: Sshd) -> Iterator[None]:
    """Stop the persistent masters a test leaves (they would outlive the test's sshd otherwise)."""
    yield
    from stageflow.sync.target import close_masters

    close_masters(sshd.ssh_command)


def _masters() -> list[str]:
    from stageflow.sync.target import control_dir

    directory = control_dir(create=False)
    return sorted(os.listdir(directory)) if directory else []


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
    from stageflow.sync.target import close_masters

    assert close_masters(sshd.ssh_command) == 1  # target init left its master; start cold
    before, sessions = sshd.accepted(), sshd.sessions()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    assert sshd.accepted() - before == 1  # role check, lock, rsync, manifest and hook share one connection
    # Sessions: the safety net (which also takes the lock and writes the small state files), rsync,
    # the shell hook, and (first sync only) the full manifest.
    assert sshd.sessions() - sessions == 4
    doc = json.loads(out)
    assert "packages/lib/lib.js" in doc["changes"]["added"] and doc["bytes_sent"] > 0
    assert (project.target / "hook-pwd").read_text().strip() == str(project.target)
    project.write("packages/lib/lib.js", "v2\n")
    (project.source / "apps/web/page.js").unlink()
    accepted, sessions = sshd.accepted(), sshd.sessions()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert sshd.accepted() - accepted == 0  # the master the first sync left
    assert sshd.sessions() - sessions == 3  # safety net + lock + state + pruning, rsync, hook
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
    # as rsync: the source still has apps/web (now empty), so the target keeps it
    assert (project.target / "apps/web").is_dir() and not list((project.target / "apps/web").iterdir())


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
    journal = (project.target / ".stageflow/manifest.journal").read_text()
    assert len(journal.splitlines()) == 1
    # The journal line and the state went through the sync's ssh session: counted as control bytes.
    changed_control = doc["control_bytes"]
    assert changed_control > len(journal.encode()) + len(
        (project.target / ".stageflow/state.json").read_bytes()
    )
    before = snapshot(project.target, skip_state=False)
    accepted, sessions = sshd.accepted(), sshd.sessions()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["accelerator"] == "git" and doc["changes"]["modified"] == []
    assert sshd.accepted() - accepted == 0  # the master left by the last sync carried it
    assert sshd.sessions() - sessions == 1  # the safety net still ran over ssh: one session, no lock
    assert 0 < doc["control_bytes"] < changed_control  # the request only: no lock, no writes
    assert snapshot(project.target, skip_state=False) == before


def _remote_project(cli, project, sshd, **keys: str) -> str:
    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    project.env(
        ssh_command=f'"{sshd.ssh_command}"', target=remote, exclude='["node_modules/", "*.log"]', **keys
    )
    assert cli("target", "init", remote, "--role", "apiserver", "--ssh-command", sshd.ssh_command)[0] == 0
    return remote


def test_second_sync_reuses_the_master_left_by_the_first(cli, project, sshd) -> None:
    from stageflow.sync.target import close_masters, control_dir

    _remote_project(cli, project, sshd)
    close_masters(sshd.ssh_command)
    accepted = sshd.accepted()
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert sshd.accepted() - accepted == 1
    (sock,) = _masters()
    directory = control_dir(create=False)
    assert directory is not None and os.stat(directory).st_mode & 0o777 == 0o700
    project.write("packages/lib/lib.js", "v2\n")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert sshd.accepted() - accepted == 1  # no new connection: the master was still there
    assert (project.target / "packages/lib/lib.js").read_text() == "v2\n"
    assert _masters() == [sock]
    code, out, _ = cli("target", "close", "--ssh-command", sshd.ssh_command)
    assert code == 0 and "closed 1" in out
    # The master removes its socket as it exits, after it acknowledged the exit request.
    deadline = time.monotonic() + 60
    while _masters():
        assert time.monotonic() < deadline, f"the master's socket stayed: {_masters()}"
        time.sleep(0.05)


def test_ssh_persist_zero_leaves_no_master(cli, project, sshd) -> None:
    from stageflow.sync.target import close_masters

    _remote_project(cli, project, sshd, ssh_persist="0")
    close_masters(sshd.ssh_command)
    accepted = sshd.accepted()
    for text in ("v2\n", "v3\n"):
        project.write("packages/lib/lib.js", text)
        code, _, err = cli("sync", project.source, "--env", "api")
        assert code == 0, err
        assert _masters() == []
    assert sshd.accepted() - accepted == 2  # one connection per sync, closed at its end


def test_stale_control_socket_is_replaced(cli, project, sshd) -> None:
    """A master killed without removing its socket: the next sync connects afresh and works."""
    from stageflow.sync.target import control_dir

    _remote_project(cli, project, sshd)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    (name,) = _masters()
    sock = os.path.join(str(control_dir(create=False)), name)
    check = subprocess.run(
        ["ssh", "-o", f"ControlPath={sock}", "-O", "check", "x"], capture_output=True, text=True
    )
    pid = int(check.stderr.split("pid=")[1].split(")")[0])
    os.kill(pid, 9)  # the master we started; its socket file stays behind
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and "Z" not in _proc_state(pid):
        assert time.monotonic() < deadline, "the killed master is still running"
        time.sleep(0.05)
    assert os.path.exists(sock)
    accepted = sshd.accepted()
    project.write("packages/lib/lib.js", "v2\n")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert sshd.accepted() - accepted == 1
    assert (project.target / "packages/lib/lib.js").read_text() == "v2\n"


def test_wrong_role_refused_through_a_warm_master(cli, project, sshd, snapshot) -> None:
    """The safety net is read every sync, also when the master is warm: a target re-initialised with
    another role is refused (exit 3) and nothing is written, not even the lock file."""
    remote = _remote_project(cli, project, sshd)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    force = ["--force", "--ssh-command", sshd.ssh_command]
    assert cli("target", "init", remote, "--role", "webserver", *force)[0] == 0
    (project.target / ".stageflow/lock").unlink()
    before = snapshot(project.target, skip_state=False)
    project.write("packages/lib/lib.js", "v2\n")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "expected 'apiserver', found 'webserver'" in err
    assert snapshot(project.target, skip_state=False) == before
    assert not (project.target / ".stageflow/lock").exists()


def test_lock_held_elsewhere_times_out_over_ssh(cli, project, sshd) -> None:
    import fcntl

    _remote_project(cli, project, sshd, lock_timeout="0.3")
    assert cli("sync", project.source, "--env", "api")[0] == 0
    project.write("packages/lib/lib.js", "v2\n")
    with open(project.target / ".stageflow/lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "locked by another sync" in err
    assert (project.target / "packages/lib/lib.js").read_text() == "lib\n"
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert (project.target / "packages/lib/lib.js").read_text() == "v2\n"
