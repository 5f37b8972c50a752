"""Change detection and file listing through git: the files changed between two refs (plus the
working tree), and the repository's files with their content ids for task hashing.

Runs read-only git commands only (diff, ls-files, rev-parse); never writes to the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from stageflow.errors import BadInput


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    except FileNotFoundError:
        raise BadInput("git is not installed: install git to use --base or content hashing") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BadInput(f"git {' '.join(args[:2])} failed in {root}: {msg[-1] if msg else proc.returncode}")
    return proc


def is_git_repo(root: Path) -> bool:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-prefix"], capture_output=True, text=True
        )
    except FileNotFoundError:
        return False
    return proc.returncode == 0


def resolve_ref(root: Path, ref: str, option: str) -> str:
    """The commit id of ``ref``; BadInput naming ``option`` when git does not know it."""
    if not is_git_repo(root):
        raise BadInput(f"{option} {ref}: {root} is not a git repository: run `git init` or drop {option}")
    proc = _git(
        root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
    )
    if proc.returncode != 0:
        raise BadInput(
            f"{option} '{ref}': unknown git ref in {root}: pass a branch, tag or commit "
            "(run `git fetch` first if it only exists on the remote)"
        )
    return proc.stdout.decode().strip()


def _split(out: bytes) -> list[str]:
    return [p for p in out.decode("utf-8", errors="surrogateescape").split("\0") if p]


def changed_files(
    root: Path,
    base: str,
    head: str = "HEAD",
    *,
    committed_only: bool = False,
    options: tuple[str, str] = ("--base", "--head"),
) -> list[str]:
    """Paths (relative to ``root``) changed in ``base...head``, plus uncommitted and untracked changes
    unless ``committed_only``. Renames count as both paths. ``options`` name the refs in errors."""
    base_id = resolve_ref(root, base, options[0])
    head_id = resolve_ref(root, head, options[1])
    paths: set[str] = set()
    diff = ["diff", "--name-only", "-z", "--no-renames", "--relative"]
    paths.update(_split(_git(root, *diff, f"{base_id}...{head_id}").stdout))
    if not committed_only:
        paths.update(_split(_git(root, *diff, "HEAD").stdout))
        paths.update(_split(_git(root, "ls-files", "-z", "--others", "--exclude-standard").stdout))
    return sorted(paths)


def blob_id(path: Path) -> str:
    """The git blob id of a file's current content (so it matches ``git ls-files -s`` ids)."""
    data = path.read_bytes() if not path.is_symlink() else os.readlink(path).encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_ids(root: Path) -> dict[str, str]:
    """Every git-tracked and untracked-not-ignored file under ``root`` -> content id of the working tree.

    Two git calls: the index ids, then the files whose working copy differs (modified, deleted,
    untracked), which are re-hashed here. Outside git, files are walked (node_modules and dot-dirs
    skipped) and hashed."""
    if not is_git_repo(root):
        return dict(_walk_ids(root))
    ids: dict[str, str] = {}
    for entry in _split(_git(root, "ls-files", "-z", "-s").stdout):
        meta, _, path = entry.partition("\t")
        ids[path] = meta.split(" ")[1]
    for entry in _split(_git(root, "ls-files", "-z", "-t", "-m", "-d", "-o", "--exclude-standard").stdout):
        tag, _, path = entry.partition(" ")
        if tag == "R":
            ids.pop(path, None)
        elif tag in {"C", "?"}:
            full = root / path
            if full.is_file() or full.is_symlink():
                ids[path] = blob_id(full)
            else:
                ids.pop(path, None)
    return ids


def _walk_ids(root: Path) -> Iterator[tuple[str, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "node_modules" and not d.startswith(".")]
        for name in filenames:
            full = Path(dirpath) / name
            yield full.relative_to(root).as_posix(), blob_id(full)
