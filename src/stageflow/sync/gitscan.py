"""The git accelerator's questions to git: where HEAD is, what the working tree changed
(``git status --porcelain=v2 -z --untracked-files=all --ignored=matching``, which also gives HEAD and
submodules in the same call) and which paths differ between two commits (``git diff --name-only
--no-renames -z``).

Advisory: never decides what ships; any answer it cannot give comes back as a reason, and the engine
then walks the whole tree. It never writes to a target, and writes to the source repository only in
one case: when every pattern git ignores paths by is also a rule that skips them (see
:func:`ignore_covered`), ``--ignored`` is not needed, so ``git status`` runs with git's untracked cache
and may refresh the index (and the cache in it) as a plain ``git status`` does. Otherwise it runs with
``--no-optional-locks``: not even an index refresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_GIT = ["git", "--no-optional-locks", "-c", "core.quotePath=false"]
#: ``git status`` when ``--ignored`` is not needed: the untracked cache (kept in the index, which git
#: may then write) answers "what is untracked" without reading every directory.
_GIT_FAST = [
    "git",
    "-c",
    "core.quotePath=false",
    "-c",
    "core.untrackedCache=true",
    "-c",
    "status.showUntrackedFiles=all",
]
_TIMEOUT = 120
#: Environment variables that move git's directory, index or config: the coverage check then says no.
_GIT_ENV_MOVES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG", "GIT_CONFIG_GLOBAL")


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

    def __init__(self, source: Path, skip_lines: frozenset[str] = frozenset()):
        self.source = source
        self.skip_lines = skip_lines
        self._proc: subprocess.Popen[bytes] | None = None
        self._view: GitView | None = None
        self._error: GitUnavailable | None = None
        #: True when ``--ignored`` was left out (every ignored path is skipped by the rules anyway).
        self.fast = False
        if not os.path.exists(os.path.join(source, ".git")):
            self._error = GitUnavailable("source is not the root of a git work tree")
        elif os.path.exists(os.path.join(source, ".gitmodules")):
            self._error = GitUnavailable("the repository has submodules (.gitmodules)")
        else:
            self.fast = ignore_covered(source, skip_lines)
            self._start()

    def _start(self) -> None:
        if self.fast:
            argv = [*_GIT_FAST, "-C", str(self.source), *self.ARGS[:-1]]
            env = {**os.environ, "LC_ALL": "C"}
        else:
            argv = [*_GIT, "-C", str(self.source), *self.ARGS]
            env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        try:
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
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
            if self._view is not None and self.fast and not self._new_ignores_covered(self._view):
                # An untracked .gitignore the coverage check has not seen: ask again, with --ignored.
                self._view, self.fast = None, False
                self._start()
                return self.result()
        if self._error is not None:
            raise self._error
        assert self._view is not None
        return self._view

    def _new_ignores_covered(self, view: GitView) -> bool:
        for rel in view.changed:
            if rel == ".gitignore" or rel.endswith("/.gitignore"):
                if not _file_covered(self.source / rel, _dir_of(rel), self.skip_lines):
                    return False
        return True


# ------------------------------------------------------------------------------------ ignore coverage
def _line_covered(line: str, directory: str, skip_lines: frozenset[str]) -> bool:
    """Whether every path that ignore ``line`` (from a .gitignore in ``directory``, "" for the root,
    info/exclude and core.excludesFile) matches is skipped by a rule line: the same line, where both
    mean the same paths (the root, or a pattern without a slash, which matches at any depth)."""
    text = line.rstrip("\n").rstrip("\r")
    stripped = text.rstrip(" ")
    if not stripped or stripped.startswith("#") or stripped.startswith("!"):
        return True  # blank, comment, or a negation (which only un-ignores: git then reports it)
    if "\\" in stripped:
        return False  # escapes: not worth reasoning about
    if stripped not in skip_lines:
        return False
    if not directory:
        return True
    core = stripped[:-1] if stripped.endswith("/") else stripped
    return "/" not in core


def _dir_of(gitignore: str) -> str:
    return gitignore[: -len(".gitignore")].rstrip("/")


def _file_covered(path: Path, directory: str, skip_lines: frozenset[str]) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    return all(_line_covered(line, directory, skip_lines) for line in text.splitlines())


def _global_files() -> list[Path]:
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [Path("/etc/gitconfig"), home / ".gitconfig", xdg / "git" / "config", xdg / "git" / "ignore"]


def _stat_key(path: Path) -> list[object]:
    try:
        st = os.stat(path)
    except OSError:
        return [str(path)]
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ino]


def _cover_cache(source: Path, skip_lines: frozenset[str]) -> Path | None:
    from stageflow import settings
    from stageflow.errors import SettingsError

    key = json.dumps([str(source), sorted(skip_lines)], ensure_ascii=False)
    name = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    try:
        directory = settings.home() / "sync"
        directory.mkdir(exist_ok=True)
    except (OSError, SettingsError):
        return None
    return directory / f"ignore-{name}.json"


def ignore_covered(source: Path, skip_lines: frozenset[str]) -> bool:
    """True when every path git ignores is skipped by the rules: each line of every tracked
    .gitignore, ``.git/info/exclude`` and the global excludes file is also an exclude/protect line
    meaning the same paths (untracked .gitignore files are checked once git status lists them).
    ``--ignored`` then adds nothing the engine would use. The answer is kept in
    ``$STAGEFLOW_HOME/sync/ignore-*.json`` with the stat of every file it read (the index, git's
    config files, each .gitignore) and recomputed (two quick git calls) when any of them changed."""
    git_dir = source / ".git"
    if not skip_lines or not git_dir.is_dir() or any(os.environ.get(v) for v in _GIT_ENV_MOVES):
        return False
    if os.environ.get("GIT_OPTIONAL_LOCKS") == "0":
        return False  # the user asked git never to write the index: no untracked cache then
    fixed = [git_dir / "index", git_dir / "config", git_dir / "info" / "exclude", *_global_files()]
    cache = _cover_cache(source, skip_lines)
    if cache is not None:
        try:
            doc = json.loads(cache.read_text(encoding="utf-8"))
            files = [Path(p) for p in doc["files"]]
            if doc["stats"] == [_stat_key(p) for p in fixed + files]:
                return bool(doc["covered"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    before = [_stat_key(p) for p in fixed]
    try:
        listed = _run(source, ["ls-files", "-z", "--cached", "--", ":(glob)**/.gitignore"])
        proc = subprocess.run(
            ["git", "-C", str(source), "config", "-z", "--path", "--get", "core.excludesFile"],
            capture_output=True,
            timeout=_TIMEOUT,
        )
    except (GitUnavailable, OSError, subprocess.TimeoutExpired):
        return False
    gitignores = [os.fsdecode(p) for p in listed.split(b"\0") if p]
    files = [source / rel for rel in gitignores]
    excludes = Path(os.fsdecode(proc.stdout.rstrip(b"\0"))) if proc.returncode == 0 and proc.stdout else None
    if excludes is not None:
        files.append(excludes.expanduser())
    stats = [_stat_key(p) for p in fixed + files]
    covered = (
        all(_file_covered(source / rel, _dir_of(rel), skip_lines) for rel in gitignores)
        and _file_covered(git_dir / "info" / "exclude", "", skip_lines)
        and _file_covered(_global_files()[-1], "", skip_lines)
        and (excludes is None or _file_covered(excludes.expanduser(), "", skip_lines))
    )
    if cache is not None and stats[: len(fixed)] == before and stats == [_stat_key(p) for p in fixed + files]:
        try:
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"files": [str(p) for p in files], "stats": stats, "covered": covered}))
            os.replace(tmp, cache)
        except OSError:
            pass
    return covered


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
