"""Built-in transports: ``local`` (two-phase copy: every file staged to a temp name, then renamed into
place, mode and mtime preserved) and ``rsync`` (the real rsync binary with ``--files-from``,
``--delete-missing-args`` and ``--delay-updates``, over ssh for ``host:/path`` targets).

A transport sends exactly the paths of the change set it is given: it never walks or deletes
anything else on the target, and never follows a symlink (links are copied as links).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import BadInput, ChangeSet, JobFailed, Register, TransferStats, hookimpl

_TMP_PREFIX = ".stageflow-tmp-"


class LocalTransportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fsync: bool = False  # fsync each file before the rename (slower, survives power loss)


class _Tree:
    """The target directory, walked the way ``openat`` allows: every parent of a path is opened
    relative to its own parent with ``O_NOFOLLOW``, so a symlink planted on the target is never
    followed; like rsync, a symlink (or file) where the source has a directory is replaced by a real
    directory. Directory descriptors are cached (a bounded number) while one transfer runs."""

    _MAX_OPEN = 128

    def __init__(self, root: str):
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root_fd)

    def parent(self, rel: str, create: bool) -> tuple[int, str] | None:
        """(fd of the real directory holding ``rel``, its last name); None when ``create`` is false
        and a parent is missing or not a real directory."""
        directory, _, name = rel.rpartition("/")
        if not directory:
            return self.root_fd, name
        cached = self._fds.get(directory)
        if cached is not None:
            return cached, name
        fd = self.root_fd
        opened: list[int] = []
        try:
            for part in directory.split("/"):
                child = self._open_dir(fd, part, create)
                if child is None:
                    return None
                opened.append(child)
                fd = child
        except BaseException:
            for o in opened:
                os.close(o)
            raise
        for o in opened[:-1]:
            os.close(o)
        if len(self._fds) >= self._MAX_OPEN:
            for old in self._fds.values():
                os.close(old)
            self._fds.clear()
        self._fds[directory] = fd
        return fd, name

    def forget(self, directory: str) -> None:
        """Drop cached descriptors of ``directory`` and below (it was removed)."""
        for key in [k for k in self._fds if k == directory or k.startswith(directory + "/")]:
            os.close(self._fds.pop(key))

    @staticmethod
    def _open_dir(parent: int, name: str, create: bool) -> int | None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not create:
                return None
            # a symlink (ELOOP) or a file (ENOTDIR) where the source has a directory: replace it
            os.unlink(name, dir_fd=parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        return os.open(name, flags, dir_fd=parent)


class LocalTransport:
    """Copy changed files into a local directory: stage all, then rename all, then delete. Paths on
    the target are reached through real directories only (see :class:`_Tree`)."""

    def __init__(self, config: LocalTransportConfig):
        self.config = config

    def send(self, source: Path, dest: str, changes: ChangeSet) -> TransferStats:
        from stageflow.sync.target import is_remote

        if is_remote(dest):
            raise BadInput(
                f"transport 'local' cannot reach {dest}: use transport = \"rsync\" for ssh targets"
            )
        tree = _Tree(dest)
        try:
            return self._send(source, dest, changes, tree)
        finally:
            tree.close()

    def _send(self, source: Path, dest: str, changes: ChangeSet, tree: _Tree) -> TransferStats:
        staged: list[tuple[str, str, str]] = []  # (parent rel, temp name, final name)
        sent = 0
        try:
            for n, rel in enumerate(changes.to_send):
                src = source / rel
                found = tree.parent(rel, create=True)
                assert found is not None
                dir_fd, name = found
                parent_rel = rel.rpartition("/")[0]
                tmp = f"{_TMP_PREFIX}{os.getpid()}-{n}"
                st = src.lstat()
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), tmp, dir_fd=dir_fd)
                    staged.append((parent_rel, tmp, name))
                    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
                else:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
                    staged.append((parent_rel, tmp, name))
                    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                        shutil.copyfileobj(inp, out, 1 << 20)
                        if self.config.fsync:
                            out.flush()
                            os.fsync(out.fileno())
                        os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
                        out.flush()
                        os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
                    sent += st.st_size
                if changes.progress is not None:
                    changes.progress(rel, sent)
        except OSError as exc:
            for parent_rel, tmp, _ in staged:
                found = tree.parent(f"{parent_rel}/{tmp}" if parent_rel else tmp, create=False)
                if found is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=found[0])
            what = exc.filename or dest
            reason = exc.strerror or type(exc).__name__
            hint = (
                "the target's disk is full: free space on it and sync again"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else "check the target's owner and permissions"
            )
            raise JobFailed(
                f"cannot write {what} on target ({reason}); nothing was changed: {hint}"
            ) from None
        for parent_rel, tmp, name in staged:
            found = tree.parent(f"{parent_rel}/{tmp}" if parent_rel else tmp, create=True)
            assert found is not None
            dir_fd = found[0]
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                    shutil.rmtree(name, dir_fd=dir_fd)  # a directory replaced by a file in the source
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        deleted = 0
        for rel in changes.deleted:
            found = tree.parent(rel, create=False)
            if found is None:
                continue  # a parent is gone or is not a real directory: nothing of ours there
            dir_fd, name = found
            try:
                if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                    continue
                os.unlink(name, dir_fd=dir_fd)
                deleted += 1
            except FileNotFoundError:
                continue
            parts = rel.split("/")[:-1]
            while parts:
                up = tree.parent("/".join(parts), create=False)
                if up is None:
                    break
                try:
                    os.rmdir(parts[-1], dir_fd=up[0])
                except OSError:
                    break
                tree.forget("/".join(parts))
                parts.pop()
        return TransferStats(files=len(staged), bytes=sent, deleted=deleted)


class RsyncTransportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rsync: str = "rsync"
    #: The ssh command line rsync uses for host:/path targets (set by the engine from the profile).
    ssh: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    timeout: float | None = None
    #: Compress on the wire (rsync -z). Default: on for host:/path targets, off for local ones.
    compress: bool | None = None


#: rsync's lines that say *why* a file was not transferred, preferred over its summary line
#: ("some files/attrs were not transferred").
_RSYNC_REASONS = (
    "could not make way",
    "cannot delete non-empty directory",
    "denied",
    "No space left",
    "Read-only file system",
    "Disk quota",
    "File name too long",
    "Invalid or incomplete multibyte",
)
_SENT = re.compile(r"Total bytes sent:\s*([\d,.]+)")


class RsyncTransport:
    """One rsync run per sync: changed paths and deleted paths go in one NUL-separated files-from list."""

    def __init__(self, config: RsyncTransportConfig):
        self.config = config

    def _compress(self, dest: str) -> bool:
        if self.config.compress is not None:
            return self.config.compress
        from stageflow.sync.target import is_remote

        return is_remote(dest)

    def send(self, source: Path, dest: str, changes: ChangeSet) -> TransferStats:
        if shutil.which(self.config.rsync) is None:
            raise BadInput(
                f"rsync binary '{self.config.rsync}' not found: install rsync (apt-get install rsync)"
            )
        paths = changes.to_send + list(changes.deleted)
        if not paths:
            return TransferStats()
        argv = [
            self.config.rsync,
            "-a",
            "--from0",
            "--files-from=-",
            "--delete-missing-args",
            "--delay-updates",
            "--no-inc-recursive",
            "--stats",
            "--out-format=%n",
            *(["-e", self.config.ssh] if self.config.ssh else []),
            *(["--compress"] if self._compress(dest) else []),
            *(["--ignore-times"] if getattr(changes, "ignore_times", False) else []),
            *self.config.extra_args,
            str(source).rstrip("/") + "/",
            dest.rstrip("/") + "/",
        ]
        payload = b"".join(os.fsencode(p) + b"\0" for p in paths)
        try:
            proc = subprocess.run(argv, input=payload, capture_output=True, timeout=self.config.timeout)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"rsync to {dest} timed out after {self.config.timeout:g} s") from None
        out = proc.stdout.decode("utf-8", "replace")
        if proc.returncode == 24 and _only_deleted_vanished(source, changes.deleted, proc.stderr):
            proc.returncode = 0  # parents of deleted paths are absent by design (--delete-missing-args)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = next(
                (ln for ln in err if any(why in ln for why in _RSYNC_REASONS)),
                err[-1] if err else f"exit {proc.returncode}",
            )
            kind = "unreachable" if proc.returncode == 255 else "failed"
            if "No space left" in detail or "Disk quota" in detail:
                detail += ": the target's disk is full: free space on it and sync again"
            raise JobFailed(f"rsync to {dest} {kind} (exit {proc.returncode}): {detail}")
        if changes.progress is not None:
            for line in out.splitlines():
                if line and not line.startswith(
                    ("Number of", "Total", "Literal", "Matched", "File list", "sent ", "total size")
                ):
                    changes.progress(line, 0)
        m = _SENT.search(out)
        sent = int(re.sub(r"[,.]", "", m.group(1))) if m else 0
        return TransferStats(files=len(changes.to_send), bytes=sent, deleted=len(changes.deleted))


def _ancestors(path: str) -> set[str]:
    parts = path.split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _only_deleted_vanished(source: Path, deleted: list[str], stderr: bytes) -> bool:
    """rsync exit 24 is fine when only deleted paths (or their absent parents) 'vanished'; a vanished
    path that was to be sent means the source changed during the sync."""
    allowed = set().union(*(_ancestors(d) for d in deleted))
    vanished = [
        # rsync writes a byte its locale cannot print as \#ooo (octal): b'caf\xe9' is "caf\#351"
        re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), v)
        for v in re.findall(rb'file has vanished: "(.*?)"\n', stderr)
    ]
    return bool(vanished) and all(os.path.relpath(os.fsdecode(v), source) in allowed for v in vanished)


@hookimpl
def register_transports(register: Register) -> None:
    register(
        "local",
        LocalTransport,
        config=LocalTransportConfig,
        description="Local directory: staged temp files, atomic renames, mode and mtime kept",
    )
    register(
        "rsync",
        RsyncTransport,
        config=RsyncTransportConfig,
        requires=(),
        description="rsync --files-from (changed paths only), over ssh for host:/path targets",
    )
