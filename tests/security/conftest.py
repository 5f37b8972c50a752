"""Fixtures for the attack tests: the build and sync fixtures (loaded from their conftest files, so
the attack tests run on exactly the same fixture repositories), a real HTTP cache server on
127.0.0.1 whose answers a test can replace with crafted entries, and a hostile second local user
(created with ``useradd``; the tests that need one skip with a reason when not run as root)."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

_TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_sync = _load("_security_sync_fixtures", _TESTS / "sync" / "conftest.py")
project = _sync.project
cli = _sync.cli
tree = _sync.tree
write_exe = _sync.write_exe
fake_ssh = _sync.fake_ssh
_no_ssh_control_dir_left = _sync._no_ssh_control_dir_left

if shutil.which("node") and shutil.which("git"):
    _build = _load("_security_build_fixtures", _TESTS / "build" / "conftest.py")
    small = _build.small
    cli_json = _build.cli_json


@dataclass
class CacheServer:
    """GET/PUT/HEAD <url>/<key>: the http build cache's protocol, entries in memory."""

    url: str = ""
    entries: dict[str, bytes] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)


@pytest.fixture
def cache_server() -> Iterator[CacheServer]:
    state = CacheServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            key = self.path.rsplit("/", 1)[1]
            state.gets.append(key)
            body = state.entries.get(key)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200 if self.path.rsplit("/", 1)[1] in state.entries else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_PUT(self) -> None:  # noqa: N802
            key = self.path.rsplit("/", 1)[1]
            state.entries[key] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/cache"
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class HostileUser:
    name: str
    uid: int
    gid: int
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command as the hostile user (setuid in the child, no shell)."""

        def demote() -> None:
            os.setgid(self.gid)
            os.setgroups([])
            os.setuid(self.uid)

        return subprocess.run(argv, preexec_fn=demote, capture_output=True, text=True, **kwargs)  # noqa: PLW1509

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        def demote() -> None:
            os.setgid(self.gid)
            os.setgroups([])
            os.setuid(self.uid)

        proc = subprocess.Popen(argv, preexec_fn=demote, text=True, **kwargs)  # noqa: PLW1509
        self.procs.append(proc)
        return proc


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is private to its user)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="stageflow-security-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def others_python() -> tuple[list[str], dict[str, str]]:
    """A Python another user can run with stageflow importable: the system interpreter (the venv's
    lives under /root) processing the venv's site-packages (its .pth files: the editable install)."""
    import sysconfig

    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no system python3 for the second user")
    site_dir = sysconfig.get_paths()["purelib"]
    boot = f"import site; site.addsitedir({site_dir!r}); import sys; sys.argv[0] = 'stageflow'; "
    return [system, "-c", boot + "from stageflow.cli import main; main(sys.argv[1:])"], {}


@pytest.fixture
def hostile_user() -> Iterator[HostileUser]:
    """A second local user, made with useradd for this test and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("a hostile second user needs root to create it (useradd); run the suite as root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd not installed (apt-get install passwd)")
    name = f"sfh{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"useradd failed: {proc.stderr.decode(errors='replace').strip()}")
    entry = pwd.getpwnam(name)
    user = HostileUser(name, entry.pw_uid, entry.pw_gid)
    try:
        yield user
    finally:
        for proc in user.procs:  # only the processes this fixture started, by their id
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
        subprocess.run(["userdel", name], capture_output=True)
