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

The client half (:func:`forward`, :func:`start_in_background`) imports only the standard library
modules a Python start-up has already loaded, so a served sync costs about one interpreter start.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

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


# ------------------------------------------------------------------------------------------ server
def _stamped_paths() -> list[str]:
    """Every loaded module's file and every sys.path directory (listed once, after the imports)."""
    paths: set[str] = {
        f for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)
    }
    paths.update(p for p in sys.path if p)
    return sorted(paths)


def _stamp(paths: list[str]) -> list[int]:
    """The mtime_ns of each of ``paths`` (-1: gone), compared before every request."""
    out = []
    for p in paths:
        try:
            out.append(os.stat(p).st_mtime_ns)
        except OSError:
            out.append(-1)
    return out


def _bind(path: str) -> socket.socket | None:
    """Listen on ``path``; None when another live server already does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
            return None  # alive
        except OSError:
            pass
        finally:
            probe.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        try:
            sock.bind(path)
        except OSError:
            return None
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


def serve(path: str, idle: float, handler: Callable[[list[str]], object]) -> None:
    """The server's main loop: each request runs ``handler(argv)`` in a fork (what ``stageflow
    ARGS`` runs in-process). The launcher (:mod:`stageflow.fast.sync_daemon`) does the imports
    first, so every fork starts warm; this module imports no command and no engine but the change
    notifier."""
    import select
    import signal

    from stageflow.sync import notify

    registry = notify.Registry()  # the inotify watches of the sources served (stageflow.sync.notify)
    channels: dict[socket.socket, int] = {}  # the server's end of each running sync's channel

    stamped = _stamped_paths()
    stamp = _stamp(stamped)
    sock = _bind(path)
    if sock is None:
        return
    inode = os.stat(path).st_ino
    pid_file = path[: -len(".sock")] + ".pid"
    with open(pid_file, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    children: set[int] = set()
    last = time.monotonic()
    try:
        while not stopping:
            for pid in list(children):
                with contextlib.suppress(OSError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        children.discard(pid)
            if children:
                last = time.monotonic()
            elif time.monotonic() - last > idle:
                break
            trees = registry.fds()
            try:
                waiting: list[Any] = [sock, *channels, *trees]  # sockets and inotify trees (fileno())
                ready, _, _ = select.select(waiting, [], [], 0.5)
            except InterruptedError:
                continue
            for tree in trees:
                if tree in ready:  # keep the kernel's event queue short between syncs
                    registry.pump(tree)
            for channel in [c for c in channels if c in ready]:
                if not notify.serve_channel(registry, channel):
                    channels.pop(channel)
                    channel.close()
            if sock not in ready:
                continue
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            last = time.monotonic()
            if not _same_user(conn):
                conn.close()
                continue
            if _stamp(stamped) != stamp:
                with contextlib.suppress(OSError):
                    conn.sendall(b'{"stale": true}\n')
                conn.close()
                break
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:  # the child: never returns to this loop, whatever happens
                try:
                    sock.close()
                    ours.close()
                    for channel in channels:
                        channel.close()
                    registry.forget_in_child()
                    notify.CHANNEL = theirs
                    _child(conn, handler)
                finally:
                    os._exit(1)
            conn.close()
            theirs.close()
            channels[ours] = pid
            children.add(pid)
    finally:
        registry.close()
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                os.unlink(path)
                os.unlink(pid_file)
        sock.close()


def _same_user(conn: socket.socket) -> bool:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    return struct.unpack("3i", creds)[1] == os.getuid()


def _child(conn: socket.socket, handler: Callable[[list[str]], object]) -> None:
    """Run one request in this fork with the client's stdio, environment, cwd, umask and argv."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.setpgid(0, 0)  # its own process group: Ctrl-C reaches the sync and what it runs, as in a terminal
    try:
        request = _receive(conn)
        conn.sendall(b'{"started": true}\n')
    except (OSError, ValueError, KeyError):
        return  # a broken request: nothing ran, the client runs in-process
    try:
        _become_client(request)
    except OSError as exc:
        os.write(2, f"stageflow: error: {exc}: cannot take over the caller's working directory\n".encode())
        code = 1
    else:
        code = _run(request["argv"], conn, handler)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client's close after the answer is no Ctrl-C
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"exit": code}).encode() + b"\n")


def _receive(conn: socket.socket) -> dict[str, Any]:
    msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    if len(msg) != _HEADER.size or len(fds) != 3:
        raise ValueError("bad request")
    (size,) = _HEADER.unpack(msg)
    if size > _MAX_REQUEST:
        raise ValueError("request too large")
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("short request")
        data += chunk
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    request: dict[str, Any] = json.loads(data)
    return request


def _become_client(request: dict[str, Any]) -> None:
    import io
    import tempfile
    import time

    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[SERVED_ENV] = str(os.getppid())
    os.umask(int(request["umask"]))
    os.chdir(request["cwd"])
    tempfile.tempdir = None  # recomputed from the client's TMPDIR
    time.tzset()  # the client's TZ
    sys.argv = [request["argv0"], *request["argv"]]
    streams: list[io.TextIOWrapper[Any]] = []
    for fd, (encoding, errors) in enumerate(request["stdio"]):
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        tty = os.isatty(fd)
        if fd == 0:
            streams.append(io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors))
        else:
            buffered = io.BufferedWriter(raw)
            streams.append(
                io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=tty or fd == 2)
            )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def _run(args: list[str], conn: socket.socket, handler: Callable[[list[str]], object]) -> int:
    """``handler(args)`` (what ``stageflow ARGS`` does in-process), Ctrl-C in the client included."""
    import atexit
    import signal
    import threading

    def watch() -> None:  # the client closed its side (Ctrl-C there): interrupt like a terminal
        with contextlib.suppress(OSError):
            while conn.recv(64):
                pass
        if not finished.is_set():
            os.killpg(os.getpid(), signal.SIGINT)

    finished = threading.Event()

    threading.Thread(target=watch, daemon=True).start()
    try:
        handler(args)
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        sys.stderr.write("stageflow: interrupted\n")
        code = 130
    finished.set()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    with contextlib.suppress(OSError):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    return int(code)
