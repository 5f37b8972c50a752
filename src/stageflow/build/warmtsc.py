"""The warm tsc runner: a few long-lived node processes that each ``require()`` a workspace's own
``typescript`` package once and run ``tsc`` compilations sent to them, instead of one ``tsc`` process
per workspace. Each compilation re-uses the parsed (and bound) declaration files of the previous ones
(``lib.*.d.ts``, dependencies' ``.d.ts``), keyed as TypeScript's own DocumentRegistry keys them and only
while the file text is unchanged; the program, type check and emit are TypeScript's, so outputs,
diagnostics and exit codes are the ones ``tsc`` gives.

Only a plain ``tsc``, ``tsc -p PATH`` or ``tsc --project PATH`` command (no other flag, no shell
syntax) whose ``tsc`` on the task's PATH is a ``typescript`` package's ``bin/tsc`` is taken;
:meth:`WarmTsc.run` returns None for anything else, and for anything that goes wrong in the worker,
and the caller runs the command as usual. Inside the worker, a project whose options ask for more than
a plain compilation (incremental/composite, diagnostics, pretty) goes through TypeScript's own
``executeCommandLine`` unchanged, and watch mode is refused.

Never decides what to build, never touches the cache or the task hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stageflow.build.model import ProcessTracker
from stageflow.settings import UnsafeSocket, checked_private, private, private_socket_dir

#: The worker program node runs (``node -e``): package data beside this module, read once.
WORKER_JS = (Path(__file__).resolve().parent / "warmtsc_worker.js").read_text(encoding="utf-8")

#: Characters that make a command more than ``tsc`` plus words (expansions, redirections, lists, ...).
SHELL_SYNTAX = frozenset("'\"`$\\;&|<>()*?[]{}~#=!\n\t")
PROJECT_FLAGS = ("-p", "--project")


def plain_tsc_args(command: str) -> list[str] | None:
    """The arguments of a ``tsc`` / ``tsc -p X`` / ``tsc --project X`` command; None for anything else."""
    if any(ch in SHELL_SYNTAX for ch in command):
        return None
    words = shlex.split(command)
    if not words or words[0] != "tsc":
        return None
    args = words[1:]
    if not args:
        return []
    if len(args) == 2 and args[0] in PROJECT_FLAGS and not args[1].startswith("-"):
        return args
    return None


def typescript_for(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(node, typescript package dir) that ``tsc`` resolves to on ``env``'s PATH, or None when ``tsc``
    there is not a typescript package's ``bin/tsc`` run by a ``node`` on the same PATH."""
    path = env.get("PATH", "")
    tsc = shutil.which("tsc", path=path)
    node = shutil.which("node", path=path)
    if tsc is None or node is None or not os.path.isabs(tsc):
        return None
    real = Path(os.path.realpath(tsc))
    package = real.parent.parent
    if real.name != "tsc" or real.parent.name != "bin":
        return None
    try:
        manifest = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("name") != "typescript" or not (package / "lib" / "typescript.js").is_file():
        return None
    return os.path.realpath(node), str(package)


class _Pid:
    """What the build's ProcessTracker kills on cancellation: the worker's process group (its own
    session), whether this build spawned it or found it persisted by an earlier build."""

    def __init__(self, pid: int):
        self.pid = pid


#: Slots per worker key: concurrent builds each take the lowest free slots (a flock per slot).
MAX_SLOTS = 64
HELLO_TIMEOUT_S = 5.0
START_TIMEOUT_S = 60.0


Unsafe = UnsafeSocket  # a socket directory or file this user must not trust


def socket_dir(create: bool = True) -> Path | None:
    """``$STAGEFLOW_HOME/tsc`` (mode 0700, this user's), or a short per-user directory under the temp
    dir when that path is too long for a Unix socket name; None when it does not exist (create=False).
    Raises :class:`Unsafe` for a directory owned by someone else or open to others."""
    # the worker runs in /: an absolute path; "<dir>/<16 hex>-<slot>.sock" must fit in sun_path
    return private_socket_dir("tsc", 76, create=create)


def worker_key(node: str, package: str, env: Mapping[str, str]) -> str:
    """Which persisted workers a build may use: same node, same typescript package (path, version and
    package.json mtime), same NODE_OPTIONS, same user, same worker program."""
    manifest = Path(package) / "package.json"
    st = manifest.stat()
    version = json.loads(manifest.read_text()).get("version")
    material = [
        node,
        package,
        version,
        st.st_mtime_ns,
        env.get("NODE_OPTIONS", ""),
        os.getuid(),
        hashlib.sha256(WORKER_JS.encode()).hexdigest(),
    ]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]


class _Worker:
    """A connection to one worker, held under its slot's lock for as long as this build uses it."""

    def __init__(self, sock: socket.socket, hello: dict[str, Any], lock_fd: int, path: Path, fresh: bool):
        self.sock = sock
        self.answers = sock.makefile("rb")
        self.pid = int(hello["pid"])
        self.proc = _Pid(self.pid)
        self.lock_fd = lock_fd
        self.path = path
        self.fresh = fresh  # spawned by this build (its lib files are not parsed yet)
        self.where: tuple[str, str, str] = ("", "", "")

    def _read(self) -> dict[str, Any] | None:
        line = self.answers.readline()
        if not line:
            return None
        return json.loads(line)

    def run(
        self, cwd: Path, args: list[str], env: Mapping[str, str], *, warm: bool = False
    ) -> dict[str, Any] | None:
        job = {"cwd": str(cwd), "args": args, "env": dict(env), "warm": warm}
        self.sock.sendall(json.dumps(job).encode() + b"\n")
        return self._read()

    def release(self, persist: float) -> None:
        """Leave the worker idle for ``persist`` seconds (then it exits on its own); 0: stop it now."""
        message = {"idle": persist} if persist > 0 else {"stop": True}
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass
        if persist <= 0:
            _wait_gone(self.path, self.pid)
        self._disconnect()

    def kill(self) -> None:
        """Stop a worker whose state is unknown (an error, a cancelled compile): the next build spawns
        a fresh one."""
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        _unlink(self.path)
        self._disconnect()

    def _disconnect(self) -> None:
        for closable in (self.answers, self.sock):
            try:
                closable.close()
            except OSError:
                pass
        os.close(self.lock_fd)  # releases the slot


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _wait_gone(path: Path, pid: int, timeout: float = 5.0) -> None:
    """Wait until a stopped worker has removed its socket (it does so just before exiting)."""
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _hello(path: Path, timeout: float | None = None) -> tuple[socket.socket, dict[str, Any]] | None:
    """Connect to a worker's socket and read its hello; None when nobody answers (a stale socket).
    Raises :class:`Unsafe` for a socket file that is not this user's private socket."""
    if not checked_private(path, stat.S_IFSOCK, "socket"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(HELLO_TIMEOUT_S if timeout is None else timeout)
        sock.connect(str(path))
        answers = sock.makefile("rb")
        line = answers.readline()
        answers.close()
        hello = json.loads(line) if line else None
    except (OSError, ValueError):
        sock.close()
        return None
    if not isinstance(hello, dict) or not hello.get("ready") or not isinstance(hello.get("pid"), int):
        sock.close()
        return None
    sock.settimeout(None)
    return sock, hello


def _start(path: Path, node: str, package: str, env: Mapping[str, str], persist: float) -> None:
    """Spawn a detached worker listening on ``path``; returns once it listens (or has died)."""
    read_fd, write_fd = os.pipe()
    try:
        subprocess.Popen(
            [node, "-e", WORKER_JS],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(
                env,
                STAGEFLOW_TSC_PACKAGE=package,
                STAGEFLOW_TSC_FD=str(write_fd),
                STAGEFLOW_TSC_SOCKET=str(path),
                STAGEFLOW_TSC_IDLE=str(max(0.0, persist)),
            ),
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd="/",
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        ready.readline()  # a line once it listens; EOF when it dies first


def _open_slot(where: tuple[str, str, str], env: Mapping[str, str], persist: float) -> _Worker | None:
    """The lowest free slot's worker: connected to when one is alive there, spawned otherwise."""
    node, package, key = where
    directory = socket_dir()
    assert directory is not None
    for slot in range(MAX_SLOTS):
        lock_fd = os.open(
            directory / f"{key}-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            continue  # another build (or another of ours) is using this slot
        path = directory / f"{key}-{slot}.sock"
        try:
            found = _hello(path)
            fresh = False
            if found is None:
                _unlink(path)  # stale: nobody listens (we hold the slot: nobody is starting one)
                _start(path, node, package, env, persist)
                found = _hello(path, START_TIMEOUT_S)
                fresh = True
            if found is None:
                _unlink(path)
                os.close(lock_fd)
                return None
        except BaseException:
            os.close(lock_fd)
            raise
        worker = _Worker(found[0], found[1], lock_fd, path, fresh)
        worker.where = where
        return worker
    return None


def running_workers() -> dict[Path, int]:
    """This user's persisted workers that answer now (socket -> pid); a busy one is not listed."""
    try:
        directory = socket_dir(create=False)
    except Unsafe:
        return {}
    found: dict[Path, int] = {}
    for path in sorted(directory.glob("*.sock")) if directory else []:
        try:
            hello = _hello(path, 1.0)
        except Unsafe:
            continue
        if hello is not None:
            hello[0].close()
            found[path] = int(hello[1]["pid"])
    return found


def stop_workers() -> int:
    """Stop every persisted warm tsc worker of this user (this STAGEFLOW_HOME); busy ones stop after
    their current compilation. Stale sockets are removed. Returns how many were stopped."""
    try:
        directory = socket_dir(create=False)
    except Unsafe:
        return 0
    stopped = 0
    for path in sorted(directory.glob("*.sock")) if directory else []:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not private(st, stat.S_IFSOCK):
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(b'{"stop": true}\n')
            stopped += 1
            # read what it sent (its hello) until it hangs up: closing with unread data would reset
            # the connection before the worker reads the stop
            while sock.recv(4096):
                pass
        except TimeoutError:
            pass  # busy with a compilation: it stops when that is done
        except OSError:
            _unlink(path)  # nobody listens
            continue
        finally:
            sock.close()
        _wait_gone(path, 0)
    return stopped


class WarmTsc:
    """A pool of warm tsc workers per (node, typescript package); at most one job per worker at a time,
    so the pool grows to the build's concurrency and no further. When the first job of a pool starts,
    the other workers (up to ``size``) are taken in the background: persisted ones are connected to
    as they are, fresh ones parse that job's program without emitting anything, so their first real
    job finds TypeScript loaded and the lib files parsed. ``persist``: seconds a worker stays alive,
    idle, after this build (for the next build to connect to); 0 stops them when the build ends."""

    def __init__(self, size: int = 1, persist: float = 0.0) -> None:
        self.size = max(1, size)
        self.persist = max(0.0, float(persist))
        self._lock = threading.Condition()
        self._idle: dict[tuple[str, str, str], list[_Worker]] = {}
        self._starting: dict[tuple[str, str, str], int] = {}
        self._count: dict[tuple[str, str, str], int] = {}
        self._all: list[_Worker] = []
        self._closed = False
        self.used = 0
        self.pids: set[int] = set()  # workers that compiled something for this build
        self.spawned = 0  # workers this build started (the rest were persisted by earlier builds)

    def run(
        self, command: str, cwd: Path, env: Mapping[str, str], tracker: ProcessTracker
    ) -> tuple[int, str] | None:
        """(exit code, output) of ``command`` compiled by a warm worker; None: run it as usual."""
        args = plain_tsc_args(command)
        if args is None:
            return None
        found = typescript_for(env)
        if found is None:
            return None
        try:
            where = (*found, worker_key(*found, env))
        except (OSError, ValueError):
            return None
        worker = self._take(where, env)
        if worker is None:
            return None
        self._prestart(where, cwd, args, env)
        tracker.add(worker.proc)
        try:
            answer = worker.run(cwd, args, env)
        except (OSError, ValueError):
            answer = None
        finally:
            tracker.discard(worker.proc)
        if answer is None or "fallback" in answer:
            self._drop(worker)
            if tracker.cancelled.is_set():
                return 143, ""
            return None
        self._give_back(where, worker)
        with self._lock:
            self.used += 1
            self.pids.add(worker.pid)
        return int(answer["code"]), str(answer["out"])

    def _take(self, where: tuple[str, str, str], env: Mapping[str, str]) -> _Worker | None:
        with self._lock:
            while True:
                idle = self._idle.setdefault(where, [])
                if idle:
                    return idle.pop()
                if self._closed:
                    return None
                if not self._starting.get(where):
                    break
                self._lock.wait()  # a worker being started will be idle soon: cheaper than another
            self._count[where] = self._count.get(where, 0) + 1
        return self._open(where, env)

    def _open(self, where: tuple[str, str, str], env: Mapping[str, str]) -> _Worker | None:
        try:
            worker = _open_slot(where, env, self.persist)
        except (OSError, ValueError):
            worker = None
        with self._lock:
            if worker is None:
                self._count[where] -= 1
                return None
            self._all.append(worker)
            self.spawned += worker.fresh
        return worker

    def _prestart(
        self, where: tuple[str, str, str], cwd: Path, args: list[str], env: Mapping[str, str]
    ) -> None:
        with self._lock:
            missing = self.size - self._count.get(where, 0)
            if missing <= 0 or self._closed:
                return
            self._count[where] += missing
            self._starting[where] = self._starting.get(where, 0) + missing

        def start() -> None:
            worker = self._open(where, env)
            if worker is not None and worker.fresh:
                try:
                    answer = worker.run(cwd, args, env, warm=True)
                except (OSError, ValueError):
                    answer = None
                if answer is None or "fallback" in answer:
                    self._drop(worker)
                    worker = None
            with self._lock:
                self._starting[where] -= 1
                self._lock.notify_all()
            if worker is not None:
                self._give_back(where, worker)

        for _ in range(missing):
            threading.Thread(target=start, name="stageflow-warm-tsc", daemon=True).start()

    def _give_back(self, where: tuple[str, str, str], worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(where, []).append(worker)
                self._lock.notify_all()
                return
            if worker in self._all:
                self._all.remove(worker)
        worker.release(self.persist)  # the build ended while it was warming up

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
                self._count[worker.where] -= 1
        worker.kill()

    def close(self) -> None:
        """Let the idle workers go: kept alive ``persist`` seconds for the next build, or stopped
        (persist 0). One still warming up is let go when it is done (or with this process)."""
        with self._lock:
            self._closed = True
            idle = [w for ws in self._idle.values() for w in ws]
            self._idle = {}
            self._all = [w for w in self._all if w not in idle]
            self._lock.notify_all()
        for worker in idle:
            worker.release(self.persist)
