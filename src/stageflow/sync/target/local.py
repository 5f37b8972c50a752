"""A local directory as a deploy target: plain file system calls, an ``flock`` on the state directory,
and never a read through a symlink under ``.stageflow``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator

from stageflow.errors import JobFailed, Refused
from stageflow.sync.target.base import STATE_DIR, Held, Snapshot, Target

#: Files read only when at most this many bytes (the role marker: one line).
_SMALL_FILES = {f"{STATE_DIR}/role": 4096}


#: What a hook that does not ask for more gets from stageflow's environment.
_CLEAN_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR")


def clean_environment() -> dict[str, str]:
    """The minimal environment of a user's hook: PATH, HOME, user, shell, locale, terminal, TZ."""
    return {k: v for k, v in os.environ.items() if k in _CLEAN_ENV or (k.startswith("LC_") and k.isupper())}


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
