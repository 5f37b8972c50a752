"""Built-in transports: ``local`` (two-phase copy: every file staged to a temp name, then renamed into
place, mode and mtime preserved) and ``rsync`` (the real rsync binary with ``--files-from``,
``--delete-missing-args`` and ``--delay-updates``, over ssh for ``host:/path`` targets).

A transport sends exactly the paths of the change set it is given: it never walks or deletes
anything else on the target, and never follows a symlink (links are copied as links).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.errors import BadInput, JobFailed
from stageflow.hookspecs import hookimpl
from stageflow.stages import TransferStats

_TMP_PREFIX = ".stageflow-tmp-"


class LocalTransportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fsync: bool = False  # fsync each file before the rename (slower, survives power loss)


class LocalTransport:
    """Copy changed files into a local directory: stage all, then rename all, then delete."""

    def __init__(self, config: LocalTransportConfig):
        self.config = config

    def send(self, source: Path, dest: str, changes: Any) -> TransferStats:
        from stageflow.sync.target import is_remote

        if is_remote(dest):
            raise BadInput(
                f"transport 'local' cannot reach {dest}: use transport = \"rsync\" for ssh targets"
            )
        root = Path(dest)
        staged: list[tuple[str, str]] = []
        sent = 0
        try:
            made: set[Path] = set()
            for n, rel in enumerate(changes.to_send):
                src = source / rel
                dst = root / rel
                if dst.parent not in made:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    made.add(dst.parent)
                tmp = str(dst.parent / f"{_TMP_PREFIX}{os.getpid()}-{n}")
                st = src.lstat()
                if os.path.islink(src):
                    os.symlink(os.readlink(src), tmp)
                    staged.append((tmp, str(dst)))
                    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                else:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    staged.append((tmp, str(dst)))
                    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                        shutil.copyfileobj(inp, out, 1 << 20)
                        if self.config.fsync:
                            out.flush()
                            os.fsync(out.fileno())
                    os.chmod(tmp, stat.S_IMODE(st.st_mode))
                    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                    sent += st.st_size
                if changes.progress is not None:
                    changes.progress(rel, sent)
        except OSError as exc:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            what = exc.filename or dest
            reason = exc.strerror or type(exc).__name__
            raise JobFailed(
                f"cannot write {what} on target ({reason}); nothing was changed: "
                "check the target's owner and permissions"
            ) from None
        for tmp, dst in staged:
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)  # a directory replaced by a file in the source
            os.replace(tmp, dst)
        deleted = 0
        for rel in changes.deleted:
            path = root / rel
            try:
                path.unlink()
                deleted += 1
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                continue
            parent = path.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
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

    def send(self, source: Path, dest: str, changes: Any) -> TransferStats:
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
    vanished = re.findall(rb'file has vanished: "(.*?)"\n', stderr)
    return bool(vanished) and all(os.path.relpath(os.fsdecode(v), source) in allowed for v in vanished)


@hookimpl
def register_transports(register):
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
