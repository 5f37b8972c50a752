"""Deploy targets: a local directory or ``[user@]host:/path`` reached over ssh (one multiplexed
connection per sync). Every filesystem operation the engine needs on a target lives here, so the
engine, releases and hooks are the same code for both.

A target object never decides *whether* to write (the safety net and the engine do); it never logs
file contents, and never follows symlinks out of its root when removing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from stageflow.errors import JobFailed, Refused

STATE_DIR = ".stageflow"
_REMOTE = re.compile(r"^(?P<host>(?:[^@/:\s]+@)?[^@/:\s]+):(?P<path>.*)$")
#: Files read only when at most this many bytes (the role marker: one line).
_SMALL_FILES = {f"{STATE_DIR}/role": 4096}
#: Default lifetime of the ssh master after a sync (``ssh_persist``).
DEFAULT_PERSIST = 600.0
#: A unix socket path holds at most 107 bytes; ssh first binds "<ControlPath>.<16 random chars>".
_SOCKET_PATH_MAX = 107 - 17


def parse_persist(value: object) -> float:
    """``ssh_persist``: seconds (a number, or "90s", "10m", "1h"); 0, "0", "no" or false: off."""
    from stageflow.settings import parse_duration

    return parse_duration(value, "ssh_persist", DEFAULT_PERSIST)


def control_dir(create: bool = True) -> str | None:
    """The directory of this user's persistent ssh master sockets: ``$STAGEFLOW_HOME/ssh`` (mode 0700),
    or ``/tmp/stageflow-ssh-<uid>-<hash of home>`` when that path is too long for a socket name. None
    when it cannot be made private (then every sync uses its own master, closed at the end)."""
    from stageflow import settings
    from stageflow.errors import SettingsError

    try:
        if create:
            settings.home()  # a clear "not writable" is the caller's fallback, not a socket in /tmp
        # "<dir>/<8 hex>-<%C: 40 hex>" plus ssh's ".<16 random>" while binding must fit in sun_path
        path = str(settings.socket_dir("ssh", _SOCKET_PATH_MAX - 50, create=create))
    except (SettingsError, OSError):
        return None
    why = settings.untrusted_ancestor(Path(path))
    if why is not None:
        # Another user could swap the directory between our check and ssh's use of the path (ssh
        # does not check who serves a ControlPath): every sync then uses its own private master.
        if create:
            _warn_once_ssh(f"persistent ssh masters not used: {why} (above {path}); make it private")
        return None
    if not create:
        return path if os.path.isdir(path) else None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # a symlink or not a directory: never put our sockets there
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            return None  # someone else's directory
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # the directory we checked, not whatever the name points to now
    except OSError:
        return None
    finally:
        os.close(fd)
    return path


_ssh_warned: set[str] = set()


def _warn_once_ssh(message: str) -> None:
    import logging

    if message not in _ssh_warned:
        _ssh_warned.add(message)
        logging.getLogger("stageflow.sync").warning(message)


def close_masters(ssh_command: str = "ssh") -> int:
    """Stop every persistent ssh master stageflow left in :func:`control_dir`; returns how many."""
    directory = control_dir(create=False)
    if directory is None:
        return 0
    closed = 0
    for name in sorted(os.listdir(directory)):
        sock = os.path.join(directory, name)
        if not stat.S_ISSOCK(os.lstat(sock).st_mode):
            continue
        argv = [*shlex.split(ssh_command), "-o", f"ControlPath={sock}", "-O", "exit", "stageflow-master"]
        proc = subprocess.run(argv, capture_output=True, timeout=30)
        if proc.returncode == 0:
            closed += 1
            deadline = time.monotonic() + 5  # the master removes its socket as it exits: wait for it
            while os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            with contextlib.suppress(OSError):
                os.unlink(sock)  # stale: its master is gone
    from stageflow import settings

    if not directory.startswith(str(settings.home_path())):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # the /tmp fallback, when empty
    return closed


#: What a hook that does not ask for more gets from stageflow's environment.
_CLEAN_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR")


def clean_environment() -> dict[str, str]:
    """The minimal environment of a user's hook: PATH, HOME, user, shell, locale, terminal, TZ."""
    return {k: v for k, v in os.environ.items() if k in _CLEAN_ENV or (k.startswith("LC_") and k.isupper())}


def is_remote(spec: str) -> bool:
    return bool(_REMOTE.match(spec)) and not os.path.exists(spec)


class Target:
    """Common interface; see :class:`LocalTarget` and :class:`SshTarget`."""

    spec: str
    root: str
    remote: bool = False
    #: Bytes of the sync's own traffic to a remote host (SshTarget counts them); 0 locally.
    control_bytes: int = 0

    def join(self, rel: str) -> str:
        return self.root.rstrip("/") + "/" + rel if rel else self.root

    def transport_dest(self, rel: str = "") -> str:
        raise NotImplementedError

    def read_text(self, rel: str) -> str | None:
        raise NotImplementedError

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    def remove(self, rel: str) -> None:
        raise NotImplementedError

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        """Several small files at once (one round trip on a remote target)."""
        return {rel: self.read_text(rel) for rel in rels}

    def write_many(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        """Append ``append`` texts (each to the end of its file), then write ``files`` atomically
        (each by rename), in order, then remove ``remove``. One round trip on a remote target."""
        for rel, text in (append or {}).items():
            self.append_text(rel, text)
        for rel, text in files.items():
            self.write_text(rel, text)
        for rel in remove:
            self.remove(rel)

    def append_text(self, rel: str, text: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class Snapshot:
    """Read-only answers about a target gathered at one moment (one round trip over ssh): files,
    environment variables, symlinks, hostname. Used by the safety net and the no-change path."""

    def __init__(
        self,
        spec: str,
        files: dict[str, str | None],
        env: dict[str, str | None],
        links: dict[str, str | None],
        host: str | Callable[[], str],
    ):
        self.spec = spec
        self.files, self._env, self.links, self._host = files, env, links, host

    def read_text(self, rel: str) -> str | None:
        return self.files[rel]

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        return {rel: self.files[rel] for rel in rels}

    def env(self, name: str) -> str | None:
        return self._env[name]

    def hostname(self) -> str:
        """Asked only when no marker, variable or .env line names a role (then one more trip)."""
        if callable(self._host):
            self._host = self._host()
        return self._host

    def readlink(self, rel: str) -> str | None:
        return self.links[rel]


#: Texts up to this size (one line each) go through the held lock session; larger ones use write_many.
HELD_LINE_LIMIT = 64 * 1024


class Held:
    """The target's lock, held. ``texts`` are the files read once it was taken; :meth:`apply` writes
    small one-line state files (pending journal, state, manifest journal line) through the same
    session over ssh instead of opening another one."""

    def __init__(
        self,
        target: LocalTarget | SshTarget,
        texts: dict[str, str | None],
        send: Callable[[list[tuple[str, str, str]]], None] | None = None,
    ):
        self.target, self.texts, self._send = target, texts, send

    def apply(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        """As :meth:`Target.write_many`: appends, then atomic writes, then removals, in order."""
        ops = [("A", rel, text) for rel, text in (append or {}).items()]
        ops += [("W", rel, text) for rel, text in files.items()]
        small = all(
            len(text) <= HELD_LINE_LIMIT
            and "\n" not in text.rstrip("\n")
            and (op == "A") == text.endswith("\n")
            for op, _, text in ops
        )
        if self._send is None or not small:
            self.target.write_many(files, remove=remove, append=append)
            return
        self._send(
            [(op, rel, text.rstrip("\n")) for op, rel, text in ops] + [("R", rel, "") for rel in remove]
        )


class LocalTarget(Target):
    def __init__(self, spec: str):
        self.spec = spec
        self.root = os.path.abspath(os.path.expanduser(spec))

    def __repr__(self) -> str:
        return f"LocalTarget({self.root!r})"

    def transport_dest(self, rel: str = "") -> str:
        return self.join(rel)

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def check_state_dir(self) -> None:
        """Refuse a ``.stageflow`` that is a symlink: the lock, manifest and role marker would be
        read and written in whatever directory it points to (another target)."""
        path = self.join(STATE_DIR)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISLNK(st.st_mode):
            raise Refused(
                f"{path} is a symlink (to {os.readlink(path)}): stageflow keeps a target's lock, "
                "manifest and role marker only in a real directory; replace the link with a directory "
                f"and run `stageflow target init {self.spec} --role ROLE`"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise Refused(f"{path} is not a directory: remove it and run `stageflow target init`")

    def read_text(self, rel: str) -> str | None:
        """A text file of the target; None when missing. Never blocks on a FIFO or device: a path that
        is not a regular file, unreadable, or not UTF-8 is Refused (exit 3), naming it. Files under
        ``.stageflow`` are never read through a symlink, and the role marker only when small."""
        path = self.join(rel)
        state = rel == STATE_DIR or rel.startswith(STATE_DIR + "/")
        if state:
            self.check_state_dir()
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if state else 0)
        try:
            fd = os.open(path, flags)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(
                    f"{path} is a symlink: stageflow reads its own state only from real files; "
                    "remove the link"
                ) from None
            raise Refused(f"cannot read {path} ({exc.strerror}): check its owner and permissions") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return None
            if not stat.S_ISREG(st.st_mode):
                raise Refused(
                    f"{path} is not a regular file (a FIFO, socket or device): remove or replace it"
                )
            limit = _SMALL_FILES.get(rel)
            if limit is not None and st.st_size > limit:
                raise Refused(
                    f"{path} is {st.st_size} bytes, not a role marker (at most {limit}): "
                    f"rewrite it with `stageflow target init {self.spec} --role ROLE`"
                )
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError as exc:
            raise Refused(f"cannot read {path} ({exc.strerror}): check the file") from None
        finally:
            os.close(fd)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(
                f"{path} is not UTF-8 text: rewrite it (for the role marker: "
                f"`stageflow target init {self.spec} --role ROLE`)"
            ) from None

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        if rel.startswith(STATE_DIR + "/"):
            self.check_state_dir()
        path = self.join(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".stageflow-tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.join(rel))

    def append_text(self, rel: str, text: str) -> None:
        if rel.startswith(STATE_DIR + "/"):
            self.check_state_dir()
        path = self.join(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def env(self, name: str) -> str | None:
        return os.environ.get(name)

    def hostname(self) -> str:
        return socket.gethostname()

    def snapshot(self, files: list[str], env: list[str], links: list[str]) -> Snapshot:
        self.check_state_dir()
        return Snapshot(
            self.spec,
            {rel: self.read_text(rel) for rel in files},
            {name: self.env(name) for name in env},
            {rel: self.readlink(rel) for rel in links},
            self.hostname,
        )

    def run(
        self,
        command: str,
        cwd_rel: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        inherit_env: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the deployed tree. ``inherit_env=False``: the command gets only a
        minimal environment (PATH, HOME, locale, ...) plus ``env`` (a user's hook: no stray secrets)."""
        base = dict(os.environ) if inherit_env else clean_environment()
        return subprocess.run(
            command,
            shell=True,
            cwd=self.join(cwd_rel),
            env={**base, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def readlink(self, rel: str) -> str | None:
        try:
            return os.readlink(self.join(rel))
        except (FileNotFoundError, OSError):
            return None

    def list_dir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.join(rel)))
        except FileNotFoundError:
            return []

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self.join(rel)) and not os.path.islink(self.join(rel))

    def clone_tree(self, src_rel: str, dst_rel: str) -> None:
        dst = self.join(dst_rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if src_rel:
            proc = subprocess.run(["cp", "-al", self.join(src_rel), dst], capture_output=True, text=True)
            if proc.returncode != 0:
                raise JobFailed(
                    f"cannot hard-link {src_rel} into {dst_rel} on {self.root}: {proc.stderr.strip()}"
                )
        else:
            os.makedirs(dst)

    def swap_symlink(self, rel: str, points_to: str) -> None:
        tmp = self.join(f"{rel}.stageflow-tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(points_to, tmp)
        os.replace(tmp, self.join(rel))

    def remove_tree(self, rel: str) -> None:
        shutil.rmtree(self.join(rel), ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, timeout: float, read: tuple[str, ...] = ()) -> Iterator[Held]:
        """Hold the target's lock; the Held it yields has the files in ``read``, read under it."""
        self.check_state_dir()
        os.makedirs(self.join(STATE_DIR), exist_ok=True)
        self.check_state_dir()
        fd = os.open(self.join(f"{STATE_DIR}/lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise JobFailed(
                            f"target {self.root} is locked by another sync (waited {timeout:g} s): "
                            "retry when it finishes, or raise lock_timeout"
                        ) from None
                    time.sleep(0.05)
            yield Held(self, self.read_many(list(read)))
        finally:
            os.close(fd)


class SshTarget(Target):
    """``[user@]host:/path``: operations run as small POSIX shell scripts over one ssh master."""

    remote = True

    def __init__(
        self,
        spec: str,
        ssh_command: str = "ssh",
        ssh_options: list[str] | None = None,
        persist: float = DEFAULT_PERSIST,
    ):
        m = _REMOTE.match(spec)
        if not m:
            raise ValueError(spec)
        self.spec = spec
        self.host = m.group("host")
        self.root = m.group("path").rstrip("/") or "/"
        base = [*shlex.split(ssh_command), *(ssh_options or [])]
        directory = control_dir() if persist > 0 else None
        self._temp_dir: str | None = None
        if directory is not None:
            # One master per ssh command line and %C (local host, remote host, port, user): another
            # identity or option set never rides on this connection.
            import hashlib

            tag = hashlib.sha256("\0".join(base).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            self.control_path = f"{directory}/{tag}-%C"
            lifetime = [f"ControlPersist={max(1, round(persist))}s", "ServerAliveInterval=15"]
        else:
            self._temp_dir = tempfile.mkdtemp(prefix="stageflow-ssh-")
            self.control_path = f"{self._temp_dir}/cm-%C"
            lifetime = ["ControlPersist=60"]
        self.persistent = directory is not None
        self.ssh_argv = [*base, "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}"]
        for option in [*lifetime, "BatchMode=yes"]:
            self.ssh_argv += ["-o", option]
        self._session: _Session | None = None
        #: Bytes this target's sessions sent to the host (remote commands, the safety net's request,
        #: lock and state writes): the sync's control traffic, besides the transport's bytes.
        self.control_bytes = 0

    def __repr__(self) -> str:
        return f"SshTarget({self.spec!r})"

    @property
    def rsync_shell(self) -> str:
        return shlex.join(self.ssh_argv)

    def transport_dest(self, rel: str = "") -> str:
        return f"{self.host}:{self.join(rel)}"

    def _q(self, rel: str) -> str:
        return shlex.quote(self.join(rel))

    def sh(
        self, script: str, stdin: str | None = None, timeout: float | None = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode == 255:
            detail = (proc.stderr.strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        if check and proc.returncode not in (0, 44):
            raise JobFailed(
                f"command on {self.spec} failed (exit {proc.returncode}): "
                f"{(proc.stderr.strip().splitlines() or [''])[-1]}"
            )
        return proc

    def exists(self) -> bool:
        return self.sh(f"[ -d {self._q('')} ] || exit 44").returncode == 0

    def _emit_files(self, rels: list[str]) -> list[str]:
        # Each file as "<byte count>\n<bytes>", or "-\n" when missing; parsed exactly by _parse.
        return [
            f"if [ -f {self._q(r)} ]; then wc -c < {self._q(r)}; cat {self._q(r)}; else echo -; fi"
            for r in rels
        ]

    @staticmethod
    def _emit_output(command: str) -> str:
        # A command's output (trailing newlines stripped) in the same framing; "-" when it fails.
        return (
            f'if out=$({command} 2>/dev/null); then printf %s "$out" | wc -c; printf %s "$out"; '
            "else echo -; fi"
        )

    def _read_script(self, script: str, count: int) -> list[str | None]:
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        return _parse_framed(self._run_read(argv), count)

    def _run_read(self, argv: list[str]) -> bytes:
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after 300 s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode == 255:
            detail = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""]
            raise JobFailed(f"reading state on {self.spec} failed (exit {proc.returncode}): {detail[-1]}")
        return proc.stdout

    def read_command(self, script: str, stdin: bytes = b"") -> bytes:
        """The stdout (bytes) of a read-only shell script on the host (drift checks: ``find``,
        ``sha256sum``); exit status non-zero is a JobFailed naming the target."""
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after 600 s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [
                f"exit {proc.returncode}"
            ]
            what = "unreachable" if proc.returncode == 255 else f"failed (exit {proc.returncode})"
            raise JobFailed(f"reading files on {self.spec} {what}: {detail[-1]}")
        return proc.stdout

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        texts = self._read_script("; ".join(self._emit_files(rels)), len(rels))
        return _utf8_files(self.spec, dict(zip(rels, texts, strict=True)))

    def snapshot(self, files: list[str], env: list[str], links: list[str]) -> Snapshot:
        """Everything the safety net and a no-change sync read, in one ssh session and few remote
        processes: environment variables through shell builtins, links through ``readlink``, each
        file read once, whole, into a shell variable (so its length and bytes always agree). The
        session then stays open for :meth:`lock` and the state writes (see :class:`_Session`)."""
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(name)
        if self._session is not None:
            self._session.close()
            self._session = None
        session, items = self._open_session(files, env, links)
        self._session = session
        n_env, n_links = len(env), len(links)
        return Snapshot(
            self.spec,
            _utf8_files(self.spec, dict(zip(files, items[n_env + n_links :], strict=True))),
            dict(zip(env, items[:n_env], strict=True)),
            dict(zip(links, items[n_env : n_env + n_links], strict=True)),
            self.hostname,
        )

    def _open_session(
        self, files: list[str], env: list[str], links: list[str]
    ) -> tuple[_Session, list[str | None]]:
        parts = ["LC_ALL=C", "export LC_ALL", _EMIT_FN]
        for name in env:
            parts.append(
                f'if [ "${{{name}+x}}" = x ]; then v=${name}; printf "%s\\n" "${{#v}}"; printf %s "$v"; '
                "else echo -; fi"
            )
        parts += [self._emit_output(f"readlink {self._q(rel)}") for rel in links]
        parts.append(f"if cd {self._q('')} 2>/dev/null; then here=1; else here=; fi")
        if files:
            quoted = " ".join(shlex.quote(rel) for rel in files)
            parts.append(f'for f in {quoted}; do if [ -n "$here" ]; then emit "$f"; else echo -; fi; done')
        parts.append(_SESSION_LOOP)
        script = "; ".join(parts)
        count = len(env) + len(links) + len(files)
        for attempt in (1, 2):
            session = _Session([*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)], self)
            try:
                return session, session.read_framed(count)
            except _SessionEnded:
                rc, err = session.failure()
            if attempt == 1 and self.persistent and rc == 255 and _MUX_TROUBLE.search(err):
                # A master that died or hung behind its socket: stop it and connect afresh, once.
                subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True, timeout=30)
                continue
            break
        if rc == 255:
            detail = (err.strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        detail = (err.strip().splitlines() or [f"exit {rc}"])[-1]
        raise JobFailed(f"reading state on {self.spec} failed (exit {rc}): {detail}")

    def write_many(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        # The largest text travels on stdin; the others (small: state, journal) inside the script.
        items = [(rel, text, True) for rel, text in (append or {}).items()]
        items += [(rel, text, False) for rel, text in files.items()]
        big = max(range(len(items)), key=lambda i: len(items[i][1])) if items else None
        steps = []
        for i, (rel, text, appending) in enumerate(items):
            source = "cat" if i == big else f"printf %s {shlex.quote(text)}"
            if appending:
                steps.append(f'mkdir -p "$(dirname {self._q(rel)})" && {source} >> {self._q(rel)}')
                continue
            tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
            steps.append(
                f'mkdir -p "$(dirname {self._q(rel)})" && {source} > {tmp} && mv -f {tmp} {self._q(rel)}'
            )
        steps += [f"rm -f {self._q(rel)}" for rel in remove]
        if steps:
            self.sh(" && ".join(steps), stdin=items[big][1] if big is not None else "")

    def append_text(self, rel: str, text: str) -> None:
        self.write_many({}, append={rel: text})

    def read_text(self, rel: str) -> str | None:
        proc = self.sh(f"if [ -f {self._q(rel)} ]; then cat {self._q(rel)}; else exit 44; fi")
        return None if proc.returncode == 44 else proc.stdout

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        path = self._q(rel)
        tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
        self.sh(
            f'mkdir -p "$(dirname {path})" && umask 077 && cat > {tmp} && chmod {mode:o} {tmp} '
            f"&& mv -f {tmp} {path}",
            stdin=text,
        )

    def remove(self, rel: str) -> None:
        self.sh(f"rm -f {self._q(rel)}")

    def env(self, name: str) -> str | None:
        proc = self.sh(f"printenv {shlex.quote(name)} || exit 44")
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def hostname(self) -> str:
        return self.sh("hostname").stdout.strip()

    def run(
        self,
        command: str,
        cwd_rel: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        inherit_env: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the deployed tree on the host (its login environment). Values in
        ``env`` travel on the session's stdin, never on a command line (``ps`` on either machine)."""
        if not env:
            return self.sh(f"cd {self._q(cwd_rel)} && {command}", timeout=timeout, check=False)
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"not an environment variable name: {name!r}")
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        script = f'cd {self._q(cwd_rel)} && eval "$(cat)" && {{ {command}\n}} </dev/null'
        return self.sh(script, stdin=exports, timeout=timeout, check=False)

    def run_quiet(self, command: str, cwd_rel: str = "") -> None:
        """Run a one-line shell command in ``cwd_rel``, output discarded and failures ignored: through
        the sync's open session when there is one (no further ssh session), else on its own."""
        session = self._session
        if session is not None and session.alive() and "\n" not in command:
            session.quiet(command, cwd_rel)
        else:
            self.run(f"{command} 2>/dev/null; true", cwd_rel=cwd_rel)

    def readlink(self, rel: str) -> str | None:
        proc = self.sh(f"readlink {self._q(rel)} || exit 44")
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def list_dir(self, rel: str) -> list[str]:
        proc = self.sh(f"[ -d {self._q(rel)} ] || exit 44; ls -1A {self._q(rel)}")
        return sorted(proc.stdout.splitlines()) if proc.returncode == 0 else []

    def is_dir(self, rel: str) -> bool:
        return self.sh(f"[ -d {self._q(rel)} ] && [ ! -L {self._q(rel)} ] || exit 44").returncode == 0

    def clone_tree(self, src_rel: str, dst_rel: str) -> None:
        dst = self._q(dst_rel)
        if src_rel:
            self.sh(f'mkdir -p "$(dirname {dst})" && cp -al {self._q(src_rel)} {dst}')
        else:
            self.sh(f"mkdir -p {dst}")

    def swap_symlink(self, rel: str, points_to: str) -> None:
        tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
        self.sh(f"rm -f {tmp} && ln -s {shlex.quote(points_to)} {tmp} && mv -Tf {tmp} {self._q(rel)}")

    def remove_tree(self, rel: str) -> None:
        if rel:
            self.sh(f"rm -rf {self._q(rel)}")

    @contextlib.contextmanager
    def lock(self, timeout: float, read: tuple[str, ...] = ()) -> Iterator[Held]:
        """Hold the target's ``flock`` for as long as the block runs, taken through the session the
        snapshot opened (or a new one): no further ssh session. The same session sends the files in
        ``read`` (read under the lock) and applies the small state writes of :meth:`Held.apply`."""
        if self._session is None or not self._session.alive():
            if self._session is not None:
                self._session.close()
            self._session = self._open_session([], [], [])[0]
        session = self._session
        try:
            session.write(f"L\n{timeout:g}\n{len(read)}\n" + "".join(f"{rel}\n" for rel in read))
            answer = session.readline()
        except _SessionEnded:
            rc, err = session.failure()
            self._session = None
            if rc == 255:
                raise JobFailed(
                    f"target {self.spec} unreachable: check the host, ssh_options and keys"
                ) from None
            raise JobFailed(
                f"cannot lock {self.spec}: the ssh session ended (exit {rc}): {err.strip()[-200:]}"
            ) from None
        if answer == "busy":
            raise JobFailed(
                f"target {self.spec} is locked by another sync (waited {timeout:g} s): "
                "retry when it finishes, or raise lock_timeout"
            )
        if answer != "locked":
            raise JobFailed(
                f"cannot lock {self.join(STATE_DIR + '/lock')} on {self.host}: check that the directory is "
                "writable by the ssh user and that flock (util-linux) is installed"
            )
        texts = dict(zip(read, session.read_framed(len(read)), strict=True))
        try:
            yield Held(self, texts, session.ops)
        except BaseException:
            session.close()  # mid-protocol: end the session, which releases the lock
            self._session = None
            raise
        try:
            session.ops([("U", "", "")])
        except JobFailed:  # the work under the lock is done; ending the session releases it anyway
            session.close()
            self._session = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._temp_dir is not None:
            subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True)
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


#: Frames a file as "<byte count>\n<bytes>" ("-\n" when missing), reading it once into a variable.
_EMIT_FN = (
    'emit() { if [ -f "$1" ]; then v=$(cat -- "$1" 2>/dev/null; echo x); v=${v%x}; '
    'printf "%s\\n" "${#v}"; printf %s "$v"; else echo -; fi; }'
)
#: After the snapshot, the session reads commands on stdin until it closes: L (take the lock, then
#: send files read under it), W/A/R (write, append, remove one small state file), X (run a command
#: line, output discarded), U (release the lock). Each is answered by one line. Nothing here ever
#: reads the protocol's stdin except ``read``; every command runs with stdin from /dev/null.
_SESSION_LOOP = (
    "while IFS= read -r op && IFS= read -r rel && IFS= read -r text; do "
    'if [ -z "$here" ]; then echo err; continue; fi; case "$op" in '
    'L) set --; i=0; while [ "$i" -lt "$text" ]; do IFS= read -r f || exit 1; set -- "$@" "$f"; '
    "i=$((i+1)); done; "
    "if mkdir -p .stageflow 2>/dev/null && true 2>/dev/null >> .stageflow/lock; then "
    'exec 9>> .stageflow/lock; flock -w "$rel" 9 </dev/null; rc=$?; '
    'if [ "$rc" -eq 0 ]; then echo locked; for f in "$@"; do emit "$f"; done; '
    'elif [ "$rc" -eq 1 ]; then echo busy; else echo err; fi; else echo err; fi ;; '
    'W) printf "%s\\n" "$text" > "$rel.stageflow-tmp-held" && mv -f "$rel.stageflow-tmp-held" "$rel" '
    "</dev/null && echo ok || echo err ;; "
    'A) printf "%s\\n" "$text" >> "$rel" && echo ok || echo err ;; '
    'R) rm -f "$rel" </dev/null && echo ok || echo err ;; '
    'X) ( cd "./$rel" && eval "$text" ) </dev/null >/dev/null 2>&1; echo ok ;; '
    "U) exec 9>&-; echo ok ;; "
    "*) echo err ;; esac; done"
)
_MUX_TROUBLE = re.compile(r"mux_client|[Cc]ontrol ?[Ss]ocket|master", re.MULTILINE)


class _SessionEnded(Exception):
    """The remote side of a session closed early (ssh failed, or the script died)."""


class _Session:
    """One ssh session kept open for a whole sync: the snapshot's reads, then the lock and the state
    writes (see _SESSION_LOOP). Closing stdin ends it (and releases a lock it holds)."""

    def __init__(self, argv: list[str], target: SshTarget):
        self.target = target
        target.control_bytes += len(argv[-1].encode("utf-8", "surrogateescape"))
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
            )
        except FileNotFoundError:
            self._err.close()
            raise JobFailed(f"ssh command '{argv[0]}' not found: install openssh-client") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def alive(self) -> bool:
        return self.proc.poll() is None

    def write(self, text: str) -> None:
        try:
            data = text.encode("utf-8", "surrogateescape")
            self.target.control_bytes += len(data)
            self.stdin.write(data)
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _SessionEnded from None

    def readline(self) -> str:
        line = self.stdout.readline()
        if not line.endswith(b"\n"):
            raise _SessionEnded
        return line.decode("utf-8", "replace").strip()

    def read_framed(self, count: int) -> list[str | None]:
        try:
            return _read_framed(self.stdout, count)
        except (ValueError, JobFailed):
            raise _SessionEnded from None

    def ops(self, ops: list[tuple[str, str, str]]) -> None:
        """Send W/A/R/X/U operations (one line each) and check every answer."""
        self.write("".join(f"{op}\n{rel}\n{text}\n" for op, rel, text in ops))
        for op, rel, _ in ops:
            try:
                answer = self.readline()
            except _SessionEnded:
                raise JobFailed(f"the ssh session to {self.target.spec} ended while writing {rel}") from None
            if answer != "ok":
                raise JobFailed(
                    f"writing {rel} on {self.target.spec} failed ({op}): check the target's permissions"
                )

    def quiet(self, command: str, cwd_rel: str = "") -> None:
        """Run a one-line shell command in ``cwd_rel`` (output discarded; failures ignored)."""
        self.ops([("X", cwd_rel, command)])

    def failure(self) -> tuple[int, str]:
        """Wait for the ended session; (exit status, stderr)."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode("utf-8", "replace")
        self._err.close()
        return rc, err

    def close(self) -> None:
        if self._err.closed:
            return
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()
        self._err.close()


def _parse_framed(out: bytes, count: int) -> list[str | None]:
    """Parse ``count`` items framed as "<byte count>\n<bytes>" or "-\n"."""
    return _parse_framed_prefix(out, count)[0]


def _parse_framed_prefix(out: bytes, count: int) -> tuple[list[str | None], int]:
    """As _parse_framed, also returning where the framed items end."""
    pos, result = 0, []
    for _ in range(count):
        end = out.index(b"\n", pos)
        head = out[pos:end].strip()
        if head == b"-":
            result.append(None)
            pos = end + 1
            continue
        size = int(head)
        result.append(out[end + 1 : end + 1 + size].decode("utf-8", "surrogateescape"))
        pos = end + 1 + size
    return result, pos


def _read_framed(stream: IO[bytes], count: int) -> list[str | None]:
    """The same framing, read from a stream that stays open (the lock session)."""
    result: list[str | None] = []
    for _ in range(count):
        head = stream.readline().strip()
        if head == b"-":
            result.append(None)
            continue
        size = int(head)
        data = b""
        while len(data) < size:
            chunk = stream.read(size - len(data))
            if not chunk:
                raise JobFailed("the target's lock session ended early")
            data += chunk
        result.append(data.decode("utf-8", "surrogateescape"))  # checked by _utf8_files
    return result


def _utf8_files(spec: str, texts: dict[str, str | None]) -> dict[str, str | None]:
    """The remote files read, refused (exit 3, naming the file) when one is not UTF-8 text, as the
    local target refuses it (a framed read keeps undecodable bytes as surrogates until here)."""
    for rel, text in texts.items():
        if text is not None and re.search("[\udc80-\udcff]", text):
            raise Refused(
                f"{spec}: {rel} is not UTF-8 text: rewrite it (for the role marker: "
                f"`stageflow target init {spec} --role ROLE`)"
            )
    return texts


def open_target(
    spec: str,
    ssh_command: str = "ssh",
    ssh_options: list[str] | None = None,
    persist: float = DEFAULT_PERSIST,
) -> LocalTarget | SshTarget:
    if is_remote(spec):
        return SshTarget(spec, ssh_command, ssh_options, persist)
    return LocalTarget(spec)
