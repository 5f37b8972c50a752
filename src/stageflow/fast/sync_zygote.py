"""The warm sync server's forking loop (the server half of :mod:`stageflow.fast.sync_server`, whose
docstring tells the whole story): binds the private socket, re-stats every loaded module before each
request, forks one child per request and runs the given handler there with the client's stdio,
environment, working directory, umask and argv. Knows no command: :mod:`stageflow.fast.sync_daemon`
passes ``stageflow.entry.run_sync`` as the handler.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import time

from stageflow.fast.sync_server import _HEADER, _MAX_REQUEST, SERVED_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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
