"""The git accelerator's questions to git: where HEAD is, what the working tree changed
(``git status --porcelain=v2 -z --untracked-files=all --ignored=matching``, which also gives HEAD and
submodules in the same call) and which paths differ between two commits (``git diff --name-only
--no-renames -z``).

Read-only and advisory: this module never writes to the source repository (``--no-optional-locks``:
not even an index refresh) nor to a target, and never decides what ships; any answer it cannot give
comes back as a reason, and the engine then walks the whole tree.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_GIT = ["git", "--no-optional-locks", "-c", "core.quotePath=false"]
_TIMEOUT = 120


@dataclass
class GitView:
    """What ``git status`` says about the working tree at one moment."""

    head: str
    #: Tracked paths changed in the index or working tree (both sides of a rename) and untracked files.
    changed: set[str] = field(default_factory=set)
    #: Ignored files (individually listed; ignored directories are in ``dirs``).
    ignored: set[str] = field(default_factory=set)
    #: Directories git reports whole, without trailing slash: ignored directories and nested repositories.
    dirs: set[str] = field(default_factory=set)


class GitUnavailable(Exception):
    """The accelerator cannot be used; the message is the reason reported in ``--json``."""


def _run(source: Path, args: list[str]) -> bytes:
    try:
        proc = subprocess.run(
            [*_GIT, "-C", str(source), *args],
            capture_output=True,
            timeout=_TIMEOUT,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise GitUnavailable("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitUnavailable(f"git {args[0]} took more than {_TIMEOUT} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        raise GitUnavailable(f"git {args[0]} failed: {detail}")
    return proc.stdout


class StatusRun:
    """``git status`` started in the background (it overlaps the safety net's ssh round trip);
    :meth:`result` waits for it. Raises GitUnavailable where the accelerator cannot be trusted: not
    the root of a work tree, no commit yet, submodules."""

    ARGS = ("status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all", "--ignored=matching")

    def __init__(self, source: Path):
        self.source = source
        self._proc: subprocess.Popen[bytes] | None = None
        self._view: GitView | None = None
        self._error: GitUnavailable | None = None
        if not os.path.exists(os.path.join(source, ".git")):
            self._error = GitUnavailable("source is not the root of a git work tree")
        elif os.path.exists(os.path.join(source, ".gitmodules")):
            self._error = GitUnavailable("the repository has submodules (.gitmodules)")
        else:
            try:
                self._proc = subprocess.Popen(
                    [*_GIT, "-C", str(source), *self.ARGS],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
                )
            except FileNotFoundError:
                self._error = GitUnavailable("git is not installed")

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

    def result(self) -> GitView:
        if self._view is None and self._error is None and self._proc is not None:
            try:
                out, err = self._proc.communicate(timeout=_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.cancel()
                self._error = GitUnavailable(f"git status took more than {_TIMEOUT} s")
            else:
                if self._proc.returncode != 0:
                    detail = (err.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
                    self._error = GitUnavailable(f"git status failed: {detail}")
                else:
                    try:
                        self._view = _parse_status(out)
                    except GitUnavailable as exc:
                        self._error = exc
        if self._error is not None:
            raise self._error
        assert self._view is not None
        return self._view


def status(source: Path) -> GitView:
    """HEAD and the working tree's changes (see :class:`StatusRun`)."""
    return StatusRun(source).result()


def _parse_status(out: bytes) -> GitView:
    view = GitView(head="")
    records = out.split(b"\0")
    i = 0
    while i < len(records):
        rec = records[i]
        i += 1
        if not rec:
            continue
        kind = rec[:1]
        if kind == b"#":
            if rec.startswith(b"# branch.oid "):
                view.head = rec[len(b"# branch.oid ") :].decode("ascii", "replace")
            continue
        if kind in (b"1", b"2", b"u"):
            nfields = {b"1": 8, b"2": 9, b"u": 10}[kind]
            parts = rec.split(b" ", nfields)
            if parts[2][:1] == b"S":
                raise GitUnavailable(f"submodule at {os.fsdecode(parts[-1])}")
            view.changed.add(os.fsdecode(parts[-1]))
            if kind == b"2":  # a rename or copy: the original path follows as its own record
                view.changed.add(os.fsdecode(records[i]))
                i += 1
            continue
        path = os.fsdecode(rec[2:])
        if path.endswith("/"):
            view.dirs.add(path.rstrip("/"))
        elif kind == b"?":
            view.changed.add(path)
        elif kind == b"!":
            view.ignored.add(path)
    if not view.head or view.head == "(initial)":
        raise GitUnavailable("the repository has no commit yet")
    return view


def changed_between(source: Path, old: str, new: str) -> set[str]:
    """Paths that differ between two commits (either may be any commit: no ancestry needed)."""
    if old == new:
        return set()
    try:
        out = _run(source, ["diff", "--name-only", "--no-renames", "-z", old, new, "--"])
    except GitUnavailable:
        raise GitUnavailable(f"the last synced commit {old[:12]} is not in this repository") from None
    return {os.fsdecode(p) for p in out.split(b"\0") if p}
