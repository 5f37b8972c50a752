"""The warm sync server: ``stageflow sync`` without paying Python's start-up and imports each time.

A cold ``stageflow sync`` spends ~150 ms importing (pydantic, the config models, the plugins'
entry points) before it looks at a file; the sync itself, with the watchman accelerator, takes a
few milliseconds. As Turborepo's daemon, Gradle's daemon or Nailgun do, the first sync run the
normal way leaves a server behind (a detached process that has already imported the engine, the
Typer app and the sync plugins) listening on a private Unix socket; later ``stageflow sync``
invocations hand it their request and wait.

Each request runs in its own ``fork()`` of the server (a zygote): the child takes the client's
stdin/stdout/stderr (the file descriptors themselves, passed over the socket with SCM_RIGHTS, so
a terminal stays a terminal and hooks' output goes where the client's goes), its environment,
working directory, umask and argv, runs exactly what ``stageflow sync ARGS`` runs in-process, and
reports the exit code. Nothing leaks between requests: each child is a fresh copy of the server
as it was after its imports, and exits after its one request.

Safety:
- The socket lives in ``$STAGEFLOW_HOME/sync-server`` (mode 0700, refused when owned by someone else
  or open to others) and the server checks each client's uid (SO_PEERCRED). The client checks the
  server's uid the same way, reaches the socket through its directory opened once and checked (no
  check-then-use by name), and does not use a server at all (one warning, then in-process) when
  another user could swap the directory: a STAGEFLOW_HOME, or a directory above it, writable by
  others without the sticky bit or owned by another user.
- The socket name is a key over the Python executable and version, the uid and the environment
  variables read once at start-up (PYTHONPATH, the locale and encoding variables,
  STAGEFLOW_LOAD_PLUGINS, STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD); another combination gets its own
  server.
- The child has no controlling terminal: a hook that opens /dev/tty itself (a password prompt)
  needs STAGEFLOW_SYNC_SERVER=0.
- Before every request the server re-stats every module file it has loaded and every directory on
  sys.path (installing a plugin changes site-packages): after any change it answers "stale" and
  exits, and the client runs in-process (and starts a fresh server).
- Ctrl-C in the client (the terminal's foreground process) reaches the child as SIGINT, so the
  sync stops as an in-process one would; the client then waits for the child's exit code.
- The server exits after ``STAGEFLOW_SYNC_SERVER`` (default "10m"; off when ``CI`` is set, as
  Turborepo's daemon) without a request; ``0`` turns the server off; ``stageflow target close``
  stops it now. ``--prefect`` and ``--help`` always run in-process.

This module is the client half and what both halves share (:func:`forward`,
:func:`start_in_background`, :func:`stop_servers`): it imports only the standard library modules a
Python start-up has already loaded, so a served sync costs about one interpreter start. The server
loop is :mod:`stageflow.fast.sync_zygote`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

ENV = "STAGEFLOW_SYNC_SERVER"
#: Set in the environment of a sync a server ran (to the server's pid).
SERVED_ENV = "STAGEFLOW_SYNC_SERVED"
DEFAULT_IDLE_S = 600.0
_HEADER = struct.Struct("!I")
_MAX_REQUEST = 8 << 20
#: "<dir>/<16 hex>.sock" within sun_path's 108 bytes
_DIR_MAX = 80
_IN_PROCESS_FLAGS = ("--prefect", "--help", "-h")
#: What Python or the plugin manager reads once at start-up: another value is another server.
_KEY_ENV = (
    "PYTHONPATH",
    "PYTHONUTF8",
    "PYTHONIOENCODING",
    "LC_ALL",
    "LC_CTYPE",
    "LANG",
    "STAGEFLOW_LOAD_PLUGINS",
    "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD",
)


# ------------------------------------------------------------------------------------------ shared
def idle_seconds() -> float:
    """How long a server waits for the next request (``STAGEFLOW_SYNC_SERVER``; 0: no server).
    Raises ValueError naming the variable for a value that is not a duration."""
    raw = os.environ.get(ENV)
    if raw is None or not raw.strip():
        # As Turborepo's daemon: not in CI (a job's runner wants no process outliving its steps).
        ci = os.environ.get("CI", "").strip().lower()
        return 0.0 if ci and ci not in ("0", "false", "no") else DEFAULT_IDLE_S
    from stageflow.settings import parse_duration

    return parse_duration(raw.strip(), ENV, DEFAULT_IDLE_S)


def server_key() -> str:
    """16 hex digits over what decides the server's imports (two CRC-32s: the socket directory is
    private, so this only needs to tell this user's combinations apart, and hashlib costs ~2 ms)."""
    import zlib

    material = [sys.executable, sys.version, os.getuid(), *(os.environ.get(v, "") for v in _KEY_ENV)]
    data = json.dumps(material).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.crc32(data[::-1]):08x}"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"stageflow: warning: {message}\n")


def _socket_path(create: bool) -> Path | None:
    from stageflow.settings import UnsafeSocket, private_socket_dir

    try:
        directory = private_socket_dir("sync-server", _DIR_MAX, create=create)
    except UnsafeSocket as exc:
        _warn_once(f"warm sync server not used: {exc}; make STAGEFLOW_HOME private (chmod 700)")
        return None
    except (OSError, ValueError):
        return None
    return None if directory is None else directory / f"{server_key()}.sock"


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


def _connect(sock: socket.socket, path: Path) -> None:
    """Connect to ``path`` through its directory opened once and checked (no check-then-use by
    name), then make sure the server is this user's; OSError otherwise (the caller runs in-process)."""
    from stageflow.settings import UnsafeSocket, open_private_dir

    dir_fd = open_private_dir(path.parent)
    try:
        by_fd = f"/proc/self/fd/{dir_fd}/{path.name}"
        sock.connect(by_fd if os.path.isdir(f"/proc/self/fd/{dir_fd}") else str(path))
    finally:
        os.close(dir_fd)
    uid = _peer_uid(sock)
    if uid != os.getuid():
        _warn_once(f"the sync server socket {path} is served by uid {uid}, not by you: not used")
        raise UnsafeSocket(str(path))


def _eligible(args: list[str]) -> bool:
    return args[:1] == ["sync"] and not any(a in _IN_PROCESS_FLAGS for a in args[1:])


# ------------------------------------------------------------------------------------------ client
def forward(args: list[str]) -> int | None:
    """Run ``stageflow ARGS`` (a ``sync``) on a warm server: its exit code, or None when no server
    took the request (none running, stale, turned off): the caller then runs it in-process. A
    server that took it and died before answering is an error (exit 1), never a silent rerun."""
    if not _eligible(args):
        return None
    try:
        if idle_seconds() <= 0:
            return None
    except ValueError as exc:
        sys.stderr.write(f"stageflow: error: {exc}\n")
        return 2
    path = _socket_path(create=False)
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        _connect(sock, path)
        umask = os.umask(0)
        os.umask(umask)
        request = {
            "argv": args,
            "argv0": sys.argv[0] if sys.argv else "stageflow",
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": umask,
            "stdio": [[s.encoding, s.errors] for s in (sys.stdin, sys.stdout, sys.stderr)],
        }
        payload = json.dumps(request).encode()
        socket.send_fds(sock, [_HEADER.pack(len(payload))], [0, 1, 2])
        sock.sendall(payload)
        sock.settimeout(None)
        answers = sock.makefile("rb")
        first = answers.readline()
    except (OSError, ValueError, AttributeError):
        sock.close()
        return None  # no server, a stale socket, or a closed stdio descriptor: run in-process
    except KeyboardInterrupt:  # before the server said anything: closing stops a child that started
        sock.close()
        sys.stderr.write("stageflow: interrupted\n")
        return 130
    try:
        if not first or json.loads(first).get("stale"):
            return None  # not taken (idle exit, or the code changed): nothing ran
        try:
            last = answers.readline()
        except KeyboardInterrupt:  # the child gets SIGINT; wait for it to stop as a sync does
            sock.shutdown(socket.SHUT_WR)
            try:
                last = answers.readline()
            except KeyboardInterrupt:
                return 130
        if not last:
            sys.stderr.write(
                "stageflow: error: the sync server ended before the sync answered: check the target, "
                f"then run again (set {ENV}=0 to run without the server)\n"
            )
            return 1
        return int(json.loads(last)["exit"])
    finally:
        sock.close()


def start_in_background(args: list[str]) -> None:
    """After an in-process sync: leave a server for the next one (never raises)."""
    try:
        idle = idle_seconds() if _eligible(args) else 0.0
        if idle <= 0:
            return
        path = _socket_path(create=True)
        if path is None:
            return
        import subprocess

        subprocess.Popen(
            # -P: the server's sys.path does not start with its working directory ("/")
            [sys.executable, "-P", "-m", "stageflow.fast.sync_daemon", str(path), str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
    except (OSError, ValueError):
        pass


def stop_servers() -> int:
    """Stop this user's sync servers (``stageflow target close``); returns how many."""
    import signal

    path = _socket_path(create=False)
    if path is None:
        return 0
    stopped = 0
    for pid_file in path.parent.glob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            stopped += 1
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return stopped
