"""The warm sync server, through the real console script in subprocesses: a second `stageflow sync`
is served by a fork of the server with the caller's working directory, environment and stdio; exit
codes and messages are the in-process ones; Ctrl-C in the caller stops the sync and what it runs;
a change to anything the server imported, or to sys.path, sends the request back in-process; the
server exits when idle, stays off with STAGEFLOW_SYNC_SERVER=0 and stops on `stageflow target close`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stageflow.fast import sync_server as server

STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))
PASS = '["STAGEFLOW_SYNC_SERVED", "MYVAR"]'  # hooks get a clean environment plus these
HOOK = 'echo \\"served=$STAGEFLOW_SYNC_SERVED my=$MYVAR\\" > hook.out'  # a TOML basic string


@pytest.fixture
def served(cli, project, monkeypatch):
    monkeypatch.setenv(server.ENV, "60")
    project.env(
        exclude='["node_modules/", "*.log"]',
        hooks=f'[{{ use = "shell", run = "{HOOK}", pass_env = {PASS} }}]',
    )
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    yield project
    server.stop_servers()


def stageflow(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STAGEFLOW, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **env}, timeout=120
    )


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def sockets() -> list[Path]:
    path = server._socket_path(create=False)
    return sorted(path.parent.glob("*.sock")) if path is not None else []


def server_processes() -> list[int]:
    """This test's sync servers (their argv names its socket directory), from the moment they are
    spawned: the CLI that starts one returns after the fork, long before the server listens, so a
    socket check alone can pass before the server exists."""
    path = server._socket_path(create=False)
    if path is None:
        return []
    mine = str(path.parent).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stageflow.fast.sync_daemon" in argv and any(a.startswith(mine) for a in argv):
            found.append(int(proc.name))
    return found


def listening() -> list[int]:
    """The pids of this test's servers that listen: a server writes its pid file after listen()."""
    pids = []
    for sock in sockets():
        try:
            pids.append(int(sock.with_suffix(".pid").read_text()))
        except (OSError, ValueError):
            pass
    return pids


def idle() -> bool:
    """No server of this test runs, listens or is recorded."""
    path = server._socket_path(create=False)
    return not server_processes() and not sockets() and not (path and list(path.parent.glob("*.pid")))


def start_server(project) -> None:
    """An in-process sync, which leaves a server; returns once the server listens."""
    first = stageflow("sync", str(project.source), "--env", "api")
    assert first.returncode == 0, first.stderr
    assert (project.target / "hook.out").read_text() == "served= my=\n"
    wait_for(lambda: len(listening()) == 1, "the server to listen")


def test_second_sync_is_served_with_the_callers_cwd_env_and_stdio(served) -> None:
    start_server(served)
    served.write("apps/web/page.js", "v2\n")
    done = stageflow("sync", ".", "--env", "api", cwd=served.source, MYVAR="hello wörld")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hook shell: ok")
    assert f"synced api to {served.target}: 0 added, 1 modified" in done.stdout
    pid = (served.target / "hook.out").read_text()
    assert pid.startswith("served=") and pid != "served= my=\n" and pid.endswith(" my=hello wörld\n")
    assert int(pid.split()[0].split("=")[1]) == int(sockets()[0].with_suffix(".pid").read_text())
    again = stageflow("sync", ".", "--env", "api", "--json", cwd=served.source)
    doc = json.loads(again.stdout)
    assert again.returncode == 0 and doc["changes"]["modified"] == [] and doc["environment"] == "api"


def test_errors_and_exit_codes_are_the_in_process_ones(served) -> None:
    start_server(served)
    remote = stageflow("sync", str(served.source), "--env", "nope")
    local = stageflow("sync", str(served.source), "--env", "nope", STAGEFLOW_SYNC_SERVER="0")
    assert remote.returncode == local.returncode == 2
    assert remote.stderr == local.stderr and remote.stderr.count("\n") == 1
    assert "unknown environment 'nope'" in remote.stderr
    missing = stageflow("sync", str(served.source / "missing"), "--env", "api")
    assert missing.returncode == 2 and missing.stderr.startswith("stageflow: error: ")


def test_ctrl_c_in_the_caller_stops_the_sync_and_its_hook(served) -> None:
    start_server(served)
    hook = '[{ use = "shell", run = "echo $$ > hook.pid; exec sleep 60" }]'
    served.env(exclude='["node_modules/", "*.log"]', hooks=hook)
    served.write("apps/web/page.js", "v2\n")
    argv = [STAGEFLOW, "sync", str(served.source), "--env", "api"]
    # As from a terminal: SIGINT at its default (a background job of a script, as CI runs us, inherits
    # it ignored, and a process that ignores Ctrl-C cannot forward it).
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    pid_file = served.target / "hook.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the hook to start")
    hook_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"interrupted" in err

    def gone() -> bool:
        try:
            os.kill(hook_pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the hook's process to stop")
    served.env(exclude='["node_modules/", "*.log"]')
    after = stageflow("sync", str(served.source), "--env", "api")  # the lock was released
    assert after.returncode == 0, after.stderr


def test_a_changed_sys_path_directory_sends_the_request_back_in_process(served, tmp_path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    env = {"PYTHONPATH": str(extra)}
    first = stageflow("sync", str(served.source), "--env", "api", **env)
    assert first.returncode == 0
    wait_for(lambda: len(listening()) == 1, "the server to listen")
    stale = listening()
    (extra / "new_plugin.py").write_text("")  # as installing a plugin changes site-packages
    served.write("apps/web/page.js", "v2\n")
    done = stageflow("sync", str(served.source), "--env", "api", **env)
    assert done.returncode == 0 and (served.target / "hook.out").read_text() == "served= my=\n"
    # the stale one left, a new one listens
    wait_for(lambda: len(listening()) == 1 and listening() != stale, "a fresh server")
    served.write("apps/web/page.js", "v3\n")
    done = stageflow("sync", str(served.source), "--env", "api", **env)
    assert done.returncode == 0 and (served.target / "hook.out").read_text() != "served= my=\n"
    # Another plugin set is another server.
    stageflow("sync", str(served.source), "--env", "api", STAGEFLOW_LOAD_PLUGINS="x", **env)
    wait_for(lambda: len(listening()) == 2, "a second server")


def test_idle_exit_off_bad_value_and_target_close(served) -> None:
    first = stageflow("sync", str(served.source), "--env", "api", STAGEFLOW_SYNC_SERVER="1")
    assert first.returncode == 0
    # The server is spawned before the CLI exits: it exists now, though it may not listen yet.
    assert server_processes(), "the sync left no server"
    wait_for(lambda: len(sockets()) == 1 or not server_processes(), "the server's socket")
    wait_for(idle, "the server's idle exit")
    served.write("apps/web/page.js", "v2\n")
    off = stageflow("sync", str(served.source), "--env", "api", STAGEFLOW_SYNC_SERVER="0")
    assert off.returncode == 0
    assert idle()  # a server would have been spawned before the CLI returned: none was
    in_ci = {k: v for k, v in os.environ.items() if k != server.ENV}
    ci = subprocess.run(
        [STAGEFLOW, "sync", str(served.source), "--env", "api"], env={**in_ci, "CI": "true"}, check=False
    )
    assert ci.returncode == 0
    assert idle()  # CI set, STAGEFLOW_SYNC_SERVER unset: no server
    bad = stageflow("sync", str(served.source), "--env", "api", STAGEFLOW_SYNC_SERVER="soon")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "STAGEFLOW_SYNC_SERVER" in bad.stderr
    start_server_again = stageflow("sync", str(served.source), "--env", "api")
    assert start_server_again.returncode == 0
    wait_for(lambda: len(listening()) == 1, "the server to listen")
    closed = stageflow("target", "close")
    assert closed.returncode == 0 and "stopped 1 sync server(s)" in closed.stdout
    wait_for(idle, "the server to stop")
