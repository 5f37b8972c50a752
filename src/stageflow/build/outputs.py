"""Build outputs: find a workspace's declared outputs, pack them (with the build log) into one
uncompressed tar, restore such an archive, and fingerprint outputs on disk.

A cache entry is untrusted input (a shared directory, a cache server). Restore never hands the
archive to ``tarfile.extractall``: every member is checked first (a relative path inside one of the
declared outputs, a regular file, a directory or a relative symlink that stays inside the declared
outputs; no hardlinks, devices, FIFOs, duplicates, or members below a symlink) and written by this
module into a fresh staging directory. The entry's last member records a SHA-256 digest of every
other member (names, types, modes, link targets, contents) and the task hash it was built for; an
entry whose digest, hash or HMAC signature (when a key is configured) does not match is corrupt and
nothing of it is written. Staged outputs are then moved into place, so an unreadable archive never
leaves half-restored outputs. Never deletes or writes anything outside the declared outputs of the
workspace it is given.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from stageflow.build.model import CacheEntryCorrupt
from stageflow.build.probe import expand, fingerprint

LOG_MEMBER = ".stageflow-log"
META_MEMBER = ".stageflow-meta.json"
#: Entry format: 2 = digest + optional signature in the last member.
FORMAT = 2
_CHUNK = 1 << 20
RESTORE_PREFIX = ".stageflow-restore-"

__all__ = [
    "CacheSignatureMismatch",
    "expand",
    "fingerprint",
    "missing",
    "pack",
    "sign",
    "unpack",
]


class CacheSignatureMismatch(CacheEntryCorrupt):
    """The entry's HMAC signature is missing or wrong: it was not written with the configured key."""


def missing(ws_path: Path, patterns: Sequence[str]) -> list[str]:
    """Declared outputs that do not exist after a build."""
    return [p for p in patterns if not expand(ws_path, [p])]


def sign(key: bytes, task_hash: str, digest: str) -> str:
    """HMAC-SHA256 (hex) binding an entry's content digest to the task hash it was built for."""
    return hmac.new(key, f"stageflow-cache-{FORMAT}\n{task_hash}\n{digest}".encode(), "sha256").hexdigest()


class _Digest:
    """The running digest of an entry's members, in archive order."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def add(self, kind: str, name: str, mode: int, extra: str) -> None:
        # JSON framing: names may hold any character, none can forge another member's line.
        self.h.update(json.dumps([kind, name, mode & 0o7777, extra]).encode("utf-8", "surrogateescape"))
        self.h.update(b"\n")

    def hexdigest(self) -> str:
        return self.h.hexdigest()


class _HashingReader:
    """A file object that hashes what tarfile reads from it (one read per packed file)."""

    def __init__(self, fh: io.BufferedReader):
        self.fh, self.h = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.h.update(data)
        return data


def pack(
    ws_path: Path,
    patterns: Sequence[str],
    log: str,
    meta: dict[str, object],
    dest: Path,
    signature_key: bytes | None = None,
) -> None:
    """Write log + outputs + meta (digest, signature) as a tar at ``dest`` (the caller renames it
    into place). ``meta["key"]`` is the task hash the entry is for."""
    digest = _Digest()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        data = log.encode("utf-8", "replace")
        info = tarfile.TarInfo(LOG_MEMBER)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        digest.add("f", LOG_MEMBER, 0o644, hashlib.sha256(data).hexdigest())
        for item in expand(ws_path, patterns):
            for path in _walk(item):
                arcname = path.relative_to(ws_path).as_posix()
                info = tar.gettarinfo(str(path), arcname)
                if info.islnk():  # a second name of an inode already packed: store it as a file
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.lstat().st_size
                if info.issym():
                    tar.addfile(info)
                    digest.add("l", arcname, 0o777, info.linkname)
                elif info.isdir():
                    tar.addfile(info)
                    digest.add("d", arcname, info.mode, "")
                elif info.isreg():
                    with open(path, "rb") as fh:
                        reader = _HashingReader(fh)
                        tar.addfile(info, reader)
                    digest.add("f", arcname, info.mode, reader.h.hexdigest())
                # sockets, FIFOs and devices are never outputs
        content_digest = digest.hexdigest()
        body = {**meta, "format": FORMAT, "digest": content_digest}
        if signature_key is not None:
            body["signature"] = sign(signature_key, str(meta.get("key", "")), content_digest)
        data = json.dumps(body).encode()
        info = tarfile.TarInfo(META_MEMBER)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))


def _walk(item: Path) -> list[Path]:
    """``item`` and, for a real directory, everything below it (symlinks are not followed)."""
    if item.is_symlink() or not item.is_dir():
        return [item]
    out = [item]
    for dirpath, dirs, files in os.walk(item):
        base = Path(dirpath)
        out += [base / d for d in sorted(dirs)]
        out += [base / f for f in sorted(files)]
        dirs.sort()
    return out


def _roots(patterns: Sequence[str]) -> list[tuple[str, ...]]:
    """Each declared output as path components (glob characters kept)."""
    roots = []
    for pattern in patterns:
        clean = pattern.strip().strip("/")
        if clean and ".." not in clean.split("/"):
            roots.append(tuple(part for part in clean.split("/") if part not in ("", ".")))
    return roots


def _declared(parts: tuple[str, ...], roots: list[tuple[str, ...]]) -> bool:
    """True when a path (components) is one of the declared outputs or lies below one."""
    for root in roots:
        if len(parts) >= len(root) and all(
            fnmatch.fnmatchcase(p, r) for p, r in zip(parts, root, strict=False)
        ):
            return True
    return False


def _member_parts(archive: str, name: str) -> tuple[str, ...]:
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise CacheEntryCorrupt(f"{archive}: cache entry member {name!r} is not a relative path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise CacheEntryCorrupt(f"{archive}: cache entry member {name!r} leaves its directory")
    return parts


def unpack(
    archive: Path,
    ws_path: Path,
    patterns: Sequence[str],
    *,
    task_hash: str | None = None,
    signature_key: bytes | None = None,
) -> str:
    """Replace the workspace's outputs with the archive's; return the recorded log.

    CacheEntryCorrupt when the archive cannot be read, is not for ``task_hash``, fails its digest,
    holds anything but the declared outputs, or (CacheSignatureMismatch) is not signed with
    ``signature_key`` when one is given. Outputs are then left as they were."""
    _clean_stale_restores(ws_path)
    staging = Path(tempfile.mkdtemp(prefix=f"{RESTORE_PREFIX}{os.getpid()}-", dir=ws_path))
    try:
        log = _extract(archive, staging, patterns, task_hash, signature_key)
        _install(staging, ws_path, patterns)
        return log
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(
    archive: Path,
    staging: Path,
    patterns: Sequence[str],
    task_hash: str | None,
    signature_key: bytes | None,
) -> str:
    """Check and write every member into ``staging``; return the log."""
    name = archive.name
    roots = _roots(patterns)
    digest = _Digest()
    seen: set[tuple[str, ...]] = set()
    links: set[tuple[str, ...]] = set()
    log: str | None = None
    meta: dict[str, object] | None = None
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                if meta is not None:
                    raise CacheEntryCorrupt(f"{name}: cache entry has members after its metadata")
                if member.name == LOG_MEMBER and log is None and not seen:
                    if not member.isreg() or member.size > 64 * 1024 * 1024:
                        raise CacheEntryCorrupt(f"{name}: cache entry log is not a small regular file")
                    data = _read_member(tar, member)
                    digest.add("f", LOG_MEMBER, 0o644, hashlib.sha256(data).hexdigest())
                    log = data.decode("utf-8", errors="replace")
                    continue
                if member.name == META_MEMBER:
                    if not member.isreg() or member.size > 1024 * 1024:
                        raise CacheEntryCorrupt(f"{name}: cache entry metadata is not a small regular file")
                    try:
                        meta = json.loads(_read_member(tar, member))
                    except ValueError:
                        raise CacheEntryCorrupt(f"{name}: cache entry metadata is not JSON") from None
                    if not isinstance(meta, dict):
                        raise CacheEntryCorrupt(f"{name}: cache entry metadata is not an object")
                    continue
                parts = _member_parts(name, member.name)
                rel = "/".join(parts)
                if log is None:
                    raise CacheEntryCorrupt(f"{name}: cache entry does not start with its log")
                if parts in seen:
                    raise CacheEntryCorrupt(f"{name}: cache entry holds {rel} twice")
                if not _declared(parts, roots):
                    raise CacheEntryCorrupt(
                        f"{name}: cache entry member {rel} is not inside the declared outputs "
                        f"({', '.join(patterns) or 'none'})"
                    )
                if any(parts[:i] in links for i in range(1, len(parts))):
                    raise CacheEntryCorrupt(f"{name}: cache entry member {rel} lies below a symlink")
                if any(parts[:i] not in seen for i in range(1, len(parts)) if _declared(parts[:i], roots)):
                    raise CacheEntryCorrupt(f"{name}: cache entry member {rel} comes before its directory")
                seen.add(parts)
                dest = staging.joinpath(*parts)
                if len(parts) > 1:
                    os.makedirs(dest.parent, mode=0o755, exist_ok=True)
                mode = member.mode & 0o755
                if member.isdir():
                    os.mkdir(dest, 0o755)
                    digest.add("d", rel, member.mode, "")
                elif member.issym():
                    target = member.linkname
                    if not _link_inside(parts, target, roots, links):
                        raise CacheEntryCorrupt(
                            f"{name}: cache entry symlink {rel} -> {target} "
                            "points outside the declared outputs"
                        )
                    os.symlink(target, dest)
                    links.add(parts)
                    digest.add("l", rel, 0o777, target)
                elif member.isreg():
                    h = hashlib.sha256()
                    source = tar.extractfile(member)
                    assert source is not None
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        while chunk := source.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                    os.chmod(dest, mode)
                    digest.add("f", rel, member.mode, h.hexdigest())
                else:
                    kind = "hardlink" if member.islnk() else "device or FIFO"
                    raise CacheEntryCorrupt(f"{name}: cache entry member {rel} is a {kind}: refused")
                with contextlib.suppress(OSError, OverflowError, ValueError):
                    os.utime(dest, (member.mtime, member.mtime), follow_symlinks=False)
    except CacheEntryCorrupt:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise CacheEntryCorrupt(f"{name}: unreadable cache entry ({exc})") from None
    if log is None or meta is None:
        raise CacheEntryCorrupt(f"{name}: cache entry lacks its log or metadata")
    if meta.get("format") != FORMAT or not isinstance(meta.get("digest"), str):
        raise CacheEntryCorrupt(f"{name}: cache entry has no content digest (written by an older stageflow)")
    if not hmac.compare_digest(str(meta["digest"]), digest.hexdigest()):
        raise CacheEntryCorrupt(
            f"{name}: cache entry content does not match its digest (tampered or damaged)"
        )
    if task_hash is not None and meta.get("key") != task_hash:
        raise CacheEntryCorrupt(f"{name}: cache entry was built for another task hash")
    if signature_key is not None:
        expected = sign(signature_key, str(meta.get("key", "")), digest.hexdigest())
        if not hmac.compare_digest(str(meta.get("signature", "")), expected):
            raise CacheSignatureMismatch(
                f"{name}: cache entry signature does not match the configured signature key"
            )
    return log


def _link_inside(
    parts: tuple[str, ...], target: str, roots: list[tuple[str, ...]], links: set[tuple[str, ...]]
) -> bool:
    """A symlink's target is relative, climbs (``..``) only before naming anything, passes through
    no symlink of the entry, and lands inside the declared outputs."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    tparts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(tparts) and tparts[ups] == "..":
        ups += 1
    rest = tparts[ups:]
    base = parts[:-1]
    if ".." in rest or ups > len(base):
        return False
    resolved = base[: len(base) - ups] + tuple(rest)
    if not resolved or any(resolved[:i] in links for i in range(1, len(resolved))):
        return False
    return _declared(resolved, roots)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    return fh.read() if fh is not None else b""


def _install(staging: Path, ws_path: Path, patterns: Sequence[str]) -> None:
    """Delete the old declared outputs, then move the staged ones into place."""
    for old in expand(ws_path, patterns):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for entry in staging.iterdir():
        target = ws_path / entry.name
        if not os.path.lexists(target):
            os.replace(entry, target)  # whole tree in one rename (the common `dist/` case)
            continue
        # A directory above a declared output (``build/`` of ``build/out``): move what is below.
        for dirpath, dirs, files in os.walk(entry):
            for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(dirpath, d)))]:
                src = Path(dirpath) / name
                dst = ws_path / src.relative_to(staging)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            moved = []
            for d in dirs:
                src = Path(dirpath) / d
                dst = ws_path / src.relative_to(staging)
                if not os.path.lexists(dst):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                    moved.append(d)
            dirs[:] = [d for d in dirs if d not in moved and not os.path.islink(os.path.join(dirpath, d))]


def _clean_stale_restores(ws_path: Path) -> None:
    """Remove staging directories a killed restore left (their process is gone)."""
    try:
        names = [n for n in os.listdir(ws_path) if n.startswith(RESTORE_PREFIX)]
    except OSError:
        return
    for n in names:
        pid = n[len(RESTORE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(ws_path / n, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
