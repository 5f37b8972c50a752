"""Fixtures for deploy-sync tests: a source project with stageflow.toml, an in-process CLI runner, a
local ``ssh`` stand-in (a real process boundary that runs the remote command locally), a fake ``pm2``
that records its argv, and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import stat
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKE_SSH = r"""#!/bin/sh
# Stand-in for ssh: skips options, then runs the command on this machine (as ssh would on the host).
while [ $# -gt 0 ]; do
  case "$1" in
    -O) exit 0 ;;
    -o|-p|-i|-l|-F) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
case "$host" in
  *unreachable*) echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255 ;;
esac
echo "$host" >> "${FAKE_SSH_LOG:-/dev/null}"
exec sh -c "$*"
"""

FAKE_PM2 = r"""#!/bin/sh
# Stand-in for pm2: records argv (one line per call) and answers jlist from $FAKE_PM2_RUNNING.
echo "$*" >> "$FAKE_PM2_LOG"
case "$1" in
  jlist) echo "${FAKE_PM2_RUNNING:-[]}" ;;
  reload|start) [ -n "$FAKE_PM2_FAIL" ] && { echo "pm2 boom" >&2; exit 1; } ;;
esac
exit 0
"""


def write_exe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class Project:
    source: Path
    target: Path

    def write(self, rel: str, text: str = "x") -> Path:
        path = self.source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def config(self, body: str) -> Path:
        return self.write("stageflow.toml", textwrap.dedent(body))

    def env(self, name: str = "api", role: str = "apiserver", **keys: object) -> Path:
        """Write a one-environment stageflow.toml; keys are TOML literals (strings pre-quoted)."""
        lines = [
            f"[sync.environments.{name}]",
            f'role = "{role}"',
            f'target = "{keys.pop("target", self.target)}"',
        ]
        lines += [f"{k} = {v}" for k, v in keys.items()]
        return self.write("stageflow.toml", "\n".join(lines) + "\n")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    source = tmp_path / "src"
    target = tmp_path / "dst"
    source.mkdir()
    p = Project(source, target)
    p.write("apps/api-server/index.js", "console.log('api')\n")
    p.write("apps/web/page.js", "web\n")
    p.write("packages/lib/lib.js", "lib\n")
    p.write("node_modules/dep/index.js", "dep\n")
    p.write("server.log", "log\n")
    return p


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``stageflow ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from stageflow.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def fake_ssh(tmp_path: Path) -> Path:
    return write_exe(tmp_path / "fakessh", FAKE_SSH)


@pytest.fixture
def fake_pm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_exe(bindir / "pm2", FAKE_PM2)
    log = tmp_path / "pm2.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PM2_LOG", str(log))
    return log


@dataclass
class HealthServer:
    url: str
    status: list[int]
    hits: list[str]


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    """A real HTTP server on 127.0.0.1; answers the statuses in ``status`` in turn (the last repeats)."""
    state = HealthServer("", [200], [])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.hits.append(self.path)
            code = state.status.pop(0) if len(state.status) > 1 else state.status[0]
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield state
    server.shutdown()
    server.server_close()


def tree(root: Path, skip_state: bool = True) -> dict[str, bytes | str]:
    """Every file under root (links as 'link:<target>'), for before/after comparisons."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if skip_state and rel.split("/")[0] == ".stageflow":
            continue
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


@pytest.fixture
def snapshot() -> Callable[..., dict[str, bytes | str]]:
    return tree


@pytest.fixture(autouse=True)
def _no_ssh_control_dir_left() -> Iterator[None]:
    """Remove the /tmp control directory a test's ssh targets made (the test's STAGEFLOW_HOME is too
    long a path for a socket name), stopping any master left in it."""
    yield
    from stageflow.sync.target import close_masters

    close_masters()
