"""Drift: how a target's real files differ from the manifest a sync recorded for them (hand edits,
deletions, files added by hand). Used by ``stageflow sync --verify`` (which then repairs them) and by
the monitor's ``drift`` probe.

By default a file matches when its type, size, mtime and permission bits do (as rsync's quick check,
mtime to the nanosecond, or to the second on a filesystem that keeps no sub-second times);
``checksum`` also compares content (SHA-256, as the manifest's digest). This module only reads the
target (one ``find`` and, with ``checksum``, one ``sha256sum`` over ssh); it never writes to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stageflow.sync.manifest import Manifest, manifest_from_json, replay
from stageflow.sync.target import STATE_DIR, LocalTarget, SshTarget


@dataclass(frozen=True)
class Seen:
    """A path as it is on the target."""

    kind: str  # "f" regular file, "l" symlink, "d" directory, "o" anything else
    size: int = 0
    mtime_ns: int = 0
    perms: int = 0
    link: str | None = None


@dataclass
class Drift:
    """Paths (manifest keys: directories end in ``/``) that differ from the manifest."""

    edited: list[str] = field(default_factory=list)  # present, but another type/size/mtime/mode/content
    missing: list[str] = field(default_factory=list)  # in the manifest, absent on the target
    extra: list[str] = field(default_factory=list)  # on the target, not in the manifest (and not skipped)
    checked: int = 0  # manifest paths compared

    def __bool__(self) -> bool:
        return bool(self.edited or self.missing or self.extra)

    def as_dict(self) -> dict[str, Any]:
        return {"edited": self.edited, "missing": self.missing, "extra": self.extra, "checked": self.checked}

    def summary(self, limit: int = 5) -> str:
        parts = []
        for label, paths in (("edited", self.edited), ("missing", self.missing), ("extra", self.extra)):
            if paths:
                shown = ", ".join(paths[:limit]) + (
                    f" and {len(paths) - limit} more" if len(paths) > limit else ""
                )
                parts.append(f"{len(paths)} {label} ({shown})")
        return "; ".join(parts) or "no drift"


# ------------------------------------------------------------------------------------------ observe
def observe(target: LocalTarget | SshTarget, base: str) -> dict[str, Seen]:
    """Every path under ``base`` on the target (directories keyed ``dir/``), symlinks not followed.
    The target's own ``.stageflow`` directory is left out."""
    if isinstance(target, LocalTarget):
        return _observe_local(target.join(base), skip_state=not base)
    return _observe_ssh(target, base)


def _observe_local(root: str, skip_state: bool) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for de in entries:
            rel = prefix + de.name
            if skip_state and rel == STATE_DIR:
                continue
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            perms = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = Seen("d", perms=perms)
                stack.append((de.path, rel + "/"))
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = Seen("l", link=os.readlink(de.path))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = Seen("f", st.st_size, st.st_mtime_ns, perms)
            else:
                out[rel] = Seen("o")
    return out


def _ns(stamp: str) -> int:
    """GNU find's ``%T@`` ("1733150000.1234567890") as nanoseconds."""
    whole, _, frac = stamp.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def _observe_ssh(target: SshTarget, base: str) -> dict[str, Seen]:
    prune = f"-path ./{STATE_DIR} -prune -o " if not base else ""
    script = (
        f"cd {target._q(base)} 2>/dev/null || exit 0; "
        f"find . -mindepth 1 {prune}-printf '%y %s %T@ %m %P\\0%l\\0'"
    )
    data = target.read_command(script)
    fields = data.split(b"\0")
    out: dict[str, Seen] = {}
    for head, link in zip(fields[0::2], fields[1::2], strict=False):
        if not head:
            continue
        kind, size, mtime, perms, path = head.split(b" ", 4)
        rel = os.fsdecode(path)
        k = kind.decode()
        if k == "d":
            out[rel + "/"] = Seen("d", perms=int(perms, 8))
        elif k == "l":
            out[rel] = Seen("l", link=os.fsdecode(link))
        elif k == "f":
            out[rel] = Seen("f", int(size), _ns(mtime.decode()), int(perms, 8))
        else:
            out[rel] = Seen("o")
    return out


def digests(target: LocalTarget | SshTarget, base: str, paths: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each regular file in ``paths`` (relative to ``base``); unreadable ones are left out."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    if isinstance(target, LocalTarget):
        root, out = target.join(base), {}
        for rel in wanted:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as fh:
                    out[rel] = hashlib.file_digest(fh, "sha256").hexdigest()
        return out
    payload = b"".join(os.fsencode("./" + p) + b"\0" for p in wanted)
    data = target.read_command(
        f"cd {target._q(base)} && xargs -0 -r sha256sum -z -- 2>/dev/null; exit 0", stdin=payload
    )
    out = {}
    for line in data.split(b"\0"):
        digest, sep, path = line.partition(b"  ")
        if sep and path.startswith(b"./"):
            out[os.fsdecode(path[2:])] = digest.decode("ascii", "replace")
    return out


# ------------------------------------------------------------------------------------------ compare
def _same_mtime(expected: int, seen: int) -> bool:
    if expected == seen:
        return True
    # A filesystem without sub-second times keeps the whole second.
    return seen % 1_000_000_000 == 0 and seen // 1_000_000_000 == expected // 1_000_000_000


def compare(
    expected: Manifest,
    seen: dict[str, Seen],
    skip: Callable[[str], bool] | None = None,
    digest_of: Callable[[list[str]], dict[str, str]] | None = None,
) -> Drift:
    """How ``seen`` differs from ``expected``. ``skip``: paths never shipped (excluded, protected),
    ignored when extra; None: extra paths are not looked for. ``digest_of``: compare content too,
    for the files whose type, size and mode match (it returns their digests)."""
    drift = Drift()
    same_meta: list[str] = []
    for path, entry in expected.items():
        drift.checked += 1
        got = seen.get(path)
        if got is None:
            drift.missing.append(path)
        elif path.endswith("/"):
            if got.kind != "d":
                drift.edited.append(path)
        elif entry.link is not None:
            if got.kind != "l" or got.link != entry.link:
                drift.edited.append(path)
        elif got.kind != "f" or got.size != entry.size or got.perms != stat.S_IMODE(entry.mode):
            drift.edited.append(path)
        elif digest_of is None and not _same_mtime(entry.mtime_ns, got.mtime_ns):
            drift.edited.append(path)
        elif digest_of is not None:
            same_meta.append(path)
    if same_meta and digest_of is not None:
        found = digest_of(same_meta)
        drift.edited += [p for p in same_meta if found.get(p) != expected[p].digest]
    if skip is not None:
        for path in seen:
            if path in expected or skip(path):
                continue
            drift.extra.append(path)  # inside an extra directory too: removed file by file
    drift.edited.sort()
    drift.missing.sort()
    drift.extra.sort()
    return drift


def check(
    target: LocalTarget | SshTarget,
    base: str,
    expected: Manifest,
    skip: Callable[[str], bool] | None = None,
    checksum: bool = False,
) -> Drift:
    """Observe ``base`` on the target and compare it with ``expected``."""
    seen = observe(target, base)
    digest_of = (lambda paths: digests(target, base, paths)) if checksum else None
    return compare(expected, seen, skip, digest_of)


# ------------------------------------------------------------------------------------------ recorded
def recorded(target: LocalTarget | SshTarget) -> tuple[str, Manifest | None, str | None]:
    """(base, the manifest the target's last sync recorded, a reason when there is none to check
    against) read from the target's own state: releases mode's ``current`` release and its manifest,
    else the in-place manifest and journal."""
    from stageflow.sync import releases

    texts = target.read_many(
        [releases.STATE_FILE, releases.PENDING_FILE, releases.MANIFEST_FILE, releases.JOURNAL_FILE]
    )
    state = releases.parse_state(texts[releases.STATE_FILE])
    if texts[releases.PENDING_FILE]:
        return "", None, "a sync was interrupted (pending journal present): run the sync again"
    current = releases.current_release(target)
    if current:
        text = target.read_text(releases.manifest_path(current))
        if not text:
            return "", None, f"release {current} has no manifest"
        try:
            return f"{releases.RELEASES}/{current}", manifest_from_json(text)[0], None
        except (ValueError, KeyError, IndexError, TypeError, json.JSONDecodeError):
            return "", None, f"release {current}'s manifest is unreadable"
    wanted = state.get("manifest_id")
    if not isinstance(wanted, str) or not wanted:
        return "", None, "no sync recorded on this target"
    found = replay(texts[releases.MANIFEST_FILE], texts[releases.JOURNAL_FILE], wanted)
    if found is None:
        return "", None, "the target's manifest does not match its state"
    return "", found, None


__all__ = ["Drift", "Seen", "check", "compare", "digests", "observe", "recorded"]
