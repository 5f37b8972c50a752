"""The warm sync server's client against a hostile second local user: the caller's environment
(tokens) and terminal must never reach a server that is not the caller's own, whether the other
user plants a socket or swaps directories in a STAGEFLOW_HOME that others can write."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from stageflow.fast import sync_server as server

#: The other user's fake server: accept connections, record what they send.
EVIL_SERVER = r"""
import os, socket, sys, threading
sock_path, record = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock_path)
s.listen(64)
open(record + ".ready", "w").close()
while True:
    c, _ = s.accept()
    c.settimeout(2)
    data = b""
    try:
        while len(data) < 1 << 20:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    with open(record, "ab") as fh:
        fh.write(data)
    c.close()
"""

#: The other user's swap loop (STAGEFLOW_HOME writable by others): their directory, with their
#: socket under the caller's socket name, takes the place of the caller's between check and use.
SWAPPER = r"""
import os, sys
home, name = sys.argv[1], sys.argv[2]
ours, evil, parked = (os.path.join(home, n) for n in ("sync-server", "evil", "parked"))
open(sys.argv[3], "w").close()
while True:
    try:
        os.rename(ours, parked); os.rename(evil, ours)
        os.rename(ours, evil); os.rename(parked, ours)
    except OSError:
        pass
"""


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _evil_server(hostile_user, shared_tmp: Path, sock: Path) -> Path:
    loot = shared_tmp / "loot"
    if not loot.exists():
        loot.mkdir()
        os.chown(loot, hostile_user.uid, hostile_user.gid)
    record = loot / "evil-record"
    script = shared_tmp / "evil_server.py"
    script.write_text(EVIL_SERVER)
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python
    hostile_user.popen([python, str(script), str(sock), str(record)])
    _wait(lambda: Path(str(record) + ".ready").exists(), "the other user's server")
    return record


def test_client_refuses_a_socket_served_by_another_user(hostile_user, shared_tmp, monkeypatch) -> None:
    """A socket in the caller's private directory, served by someone else (planted there: the
    directory check passes): SO_PEERCRED tells, and nothing is sent."""
    home = shared_tmp / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    monkeypatch.setenv(server.ENV, "60")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-caller-secret")
    path = server._socket_path(create=True)
    assert path is not None
    lair = shared_tmp / "lair"
    lair.mkdir()
    os.chown(lair, hostile_user.uid, hostile_user.gid)
    record = _evil_server(hostile_user, shared_tmp, lair / "s.sock")
    os.rename(lair / "s.sock", path)  # the other user's listening socket, under our name
    assert server.forward(["sync", ".", "--env", "api"]) is None  # not served: runs in-process
    time.sleep(0.5)  # let the other server record whatever it might have received
    got = record.read_bytes() if record.exists() else b""
    assert b"xoxb-caller-secret" not in got and got == b""


def test_world_writable_home_swapped_in_a_loop_gets_nothing(
    hostile_user, shared_tmp, monkeypatch, capsys
) -> None:
    home = shared_tmp / "home"
    home.mkdir()
    home.chmod(0o777)  # a shared, world-writable STAGEFLOW_HOME (no sticky bit)
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    monkeypatch.setenv(server.ENV, "60")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-caller-secret")
    (home / "sync-server").mkdir(mode=0o700)  # the caller's own, private, socket directory
    key = server.server_key()
    evil = home / "evil"
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python
    hostile_user.run([python, "-c", f"import os; os.mkdir({str(evil)!r}, 0o700)"])
    record = _evil_server(hostile_user, shared_tmp, evil / f"{key}.sock")
    swapper = shared_tmp / "swapper.py"
    swapper.write_text(SWAPPER)
    ready = shared_tmp / "loot" / "swapper.ready"
    hostile_user.popen([python, str(swapper), str(home), key, str(ready)])
    _wait(ready.exists, "the swap loop")
    deadline = time.monotonic() + 20
    tries = 0
    while time.monotonic() < deadline and not (record.exists() and record.stat().st_size):
        server.forward(["sync", ".", "--env", "api"])
        tries += 1
    time.sleep(0.5)
    got = record.read_bytes() if record.exists() else b""
    assert b"xoxb-caller-secret" not in got, f"the other user got the environment after {tries} tries"
    err = capsys.readouterr().err
    assert err.count("warm sync server not used") == 1 and "writable by other users" in err


def test_world_writable_home_starts_no_server(shared_tmp, monkeypatch, capsys) -> None:
    home = shared_tmp / "home"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    monkeypatch.setenv(server.ENV, "60")
    getattr(server, "_warned", set()).clear()
    server.start_in_background(["sync", ".", "--env", "api"])
    assert not (home / "sync-server").exists()
    assert "warm sync server not used" in capsys.readouterr().err


def test_ssh_control_dir_not_used_in_a_world_writable_home(shared_tmp, monkeypatch) -> None:
    from stageflow.sync.target import control_dir

    home = shared_tmp / "h"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    # never a directory inside the untrusted home: none (each sync then uses its own private master),
    # or, where the home's path is too long for a socket name, the private per-user temp directory
    got = control_dir()
    if got is not None:
        info = Path(got).stat()
        assert home not in Path(got).parents and Path(got) != home, got
        assert info.st_uid == os.getuid() and info.st_mode & 0o077 == 0, oct(info.st_mode)
    home.chmod(0o700)
    assert control_dir() is not None


@pytest.fixture(autouse=True)
def _fresh_warnings():
    getattr(server, "_warned", set()).clear()
    yield
    getattr(server, "_warned", set()).clear()
