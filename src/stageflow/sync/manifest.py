"""Manifests (path -> size, mtime_ns, mode, content hash, link target) and change sets.

A shipped directory has its own entry, keyed ``dir/`` (trailing slash; size and mtime 0, digest
``dir``), so directories whose contents are all excluded are created as rsync creates them.

A manifest describes what a sync shipped; the next sync diffs a fresh scan of the source against it.
Hashes are reused when size, mtime_ns and mode are unchanged, so a no-change scan reads no file
contents. On a target, an in-place manifest is a base file plus an append-only journal of deltas,
each line chained to the previous manifest id (so a sync that changes 10 files writes 10 entries,
not the whole manifest). This module reads the source tree only; it never writes to a target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from stageflow.contracts.deploy import ChangeSet as ChangeSet
from stageflow.sync.rules import SelectionRules

MANIFEST_VERSION = 2


class Entry(NamedTuple):
    """One shipped path. ``link`` is set for symlinks (then ``digest`` hashes the link text)."""

    size: int
    mtime_ns: int
    mode: int
    digest: str
    link: str | None = None

    def same_content(self, other: Entry) -> bool:
        return (self.digest, self.mode & 0o7777, self.link) == (other.digest, other.mode & 0o7777, other.link)


Manifest = dict[str, Entry]

DIR_DIGEST = "dir"


def dir_entry(st: os.stat_result) -> Entry:
    """A directory's entry: only its permissions count (its mtime changes with every file in it)."""
    return Entry(0, 0, stat.S_IFDIR | stat.S_IMODE(st.st_mode), DIR_DIGEST)


def with_parent_dirs(paths: Iterable[str]) -> set[str]:
    """``paths`` plus the directory keys (``a/``, ``a/b/``) of every one's parents: an accelerator's
    candidates, so a directory that appeared or vanished with a file is looked at too."""
    out = set(paths)
    for path in list(out):
        parts = path.rstrip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]) + "/")
    return out


_SURROGATE = re.compile("[\udc80-\udcff]")


def json_text(obj: Any, **options: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False)`` that is always valid UTF-8: a path that is not UTF-8
    (``os.fsdecode`` keeps its bytes as lone surrogates, e.g. ``caf\\udce9.txt`` for b'caf\\xe9.txt')
    is written with ``\\udcXX`` escapes, which ``json.loads`` turns back into the same surrogates, so
    ``os.fsencode`` gives the original bytes again."""
    text = json.dumps(obj, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def manifest_to_json(manifest: Manifest, **meta: Any) -> str:
    """Columnar JSON (one list per field): compact, and fast to parse for 100k paths."""
    paths = sorted(manifest)
    entries = [manifest[p] for p in paths]
    columns = {name: [e[i] for e in entries] for i, name in enumerate(Entry._fields)}
    return json_text({"version": MANIFEST_VERSION, **meta, "paths": paths, **columns})


def manifest_from_json(text: str) -> tuple[Manifest, dict[str, Any]]:
    data = json.loads(text)
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(f"unsupported manifest version {data.get('version')!r}")
    paths = data.pop("paths")
    columns = [data.pop(name) for name in Entry._fields]
    if any(len(c) != len(paths) for c in columns):
        raise ValueError("manifest columns differ in length")
    return dict(zip(paths, map(Entry._make, zip(*columns, strict=True)), strict=True)), data


def manifest_id_of_json(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def manifest_id(manifest: Manifest) -> str:
    return manifest_id_of_json(manifest_to_json(manifest))


@dataclass
class ScanResult:
    files: Manifest
    files_scanned: int = 0
    excluded: int = 0
    skipped_links: list[str] = field(default_factory=list)
    hashed: int = 0


def _hash_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _link_escapes(root: str, link_path: str, target: str) -> bool:
    if os.path.isabs(target):
        return True
    lexical = os.path.normpath(os.path.join(os.path.dirname(link_path), target))
    if lexical != root and not lexical.startswith(root + os.sep):
        return True
    real = os.path.realpath(link_path)
    real_root = os.path.realpath(root)
    return real != real_root and not real.startswith(real_root + os.sep)


def _add(
    root: str, rel: str, path: str, st: os.stat_result, prev: Mapping[str, Entry], result: ScanResult
) -> None:
    """Record one regular file or symlink (already known not to be excluded)."""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if _link_escapes(root, path, target):
            result.skipped_links.append(rel)
            return
        digest = "link:" + hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()
        result.files[rel] = Entry(0, st.st_mtime_ns, st.st_mode, digest, target)
        return
    old = prev.get(rel)
    if (
        old is not None
        and old.link is None
        and old.size == st.st_size
        and old.mtime_ns == st.st_mtime_ns
        and old.mode == st.st_mode
    ):
        result.files[rel] = old
        return
    result.hashed += 1
    result.files[rel] = Entry(st.st_size, st.st_mtime_ns, st.st_mode, _hash_file(path))


def scan_paths(
    source: Path, rules: SelectionRules, paths: Iterable[str], previous: Mapping[str, Entry]
) -> ScanResult:
    """Look at just ``paths`` (the git accelerator's candidates): each one that exists as a regular file
    or symlink and that a full walk would ship is in ``files``, exactly as :func:`scan` would have it."""
    root = os.path.abspath(source)
    result = ScanResult(files={})
    for rel in sorted(set(paths)):
        if rules.skip_path(rel):
            result.excluded += 1
            continue
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if rel.endswith("/"):
            if stat.S_ISDIR(st.st_mode) and _parents_are_dirs(root, rel.rstrip("/")):
                result.files[rel] = dir_entry(st)
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue
        if not _parents_are_dirs(root, rel):
            continue
        result.files_scanned += 1
        _add(root, rel, path, st, previous, result)
    result.skipped_links.sort()
    return result


def _parents_are_dirs(root: str, rel: str) -> bool:
    """A full walk never goes through a symlinked directory: a path below one does not ship."""
    parent = rel.rpartition("/")[0]
    while parent:
        if os.path.islink(os.path.join(root, parent)):
            return False
        parent = parent.rpartition("/")[0]
    return True


def scan(
    source: Path, rules: SelectionRules, previous: Mapping[str, Entry] | None = None, under: str = ""
) -> ScanResult:
    """Walk ``source`` (pruning excluded directories), returning the manifest of what would ship.
    ``under`` limits the walk to one directory (relative, no trailing slash), as a full walk sees it."""
    root = os.path.abspath(source)
    prev = previous or {}
    result = ScanResult(files={})
    if under:
        start = os.path.join(root, under)
        if rules.skip_tree(under) or os.path.islink(start) or not os.path.isdir(start):
            return result
        if not _parents_are_dirs(root, under):
            return result
        stack: list[tuple[str, str]] = [(start, under + "/")]
        if rules.dir_entry(under):
            result.files[under + "/"] = dir_entry(os.lstat(start))
    else:
        stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            entries = list(it)
        for de in entries:
            rel = prefix + de.name
            if de.is_dir(follow_symlinks=False):
                if rules.skip_dir(rel):
                    result.excluded += 1
                else:
                    stack.append((de.path, rel + "/"))
                    if rules.dir_entry(rel):
                        result.files[rel + "/"] = dir_entry(de.stat(follow_symlinks=False))
                continue
            is_link = de.is_symlink()
            if not (is_link or de.is_file(follow_symlinks=False)):
                continue  # sockets, fifos, devices never ship
            result.files_scanned += 1
            if rules.skip_file(rel):
                result.excluded += 1
                continue
            _add(root, rel, de.path, de.stat(follow_symlinks=False), prev, result)
    result.skipped_links.sort()
    return result


def diff(previous: Manifest, current: Manifest, dirty: set[str] | frozenset[str] = frozenset()) -> ChangeSet:
    """What changed from ``previous`` to ``current``. Paths in ``dirty`` (an interrupted sync's change
    set) are re-sent if they exist and re-deleted if they do not."""
    changes = ChangeSet()
    for path, entry in current.items():
        old = previous.get(path)
        if path.endswith("/"):
            if old is None or path in dirty or not old.same_content(entry):
                changes.dirs.append(path[:-1])
            continue
        if old is None:
            (changes.modified if path in dirty else changes.added).append(path)
        elif path in dirty or not old.same_content(entry) or old.mtime_ns != entry.mtime_ns:
            changes.modified.append(path)
        else:
            continue
        changes.bytes_to_send += entry.size
    changes.deleted = [p for p in previous if p not in current]
    changes.deleted += [p for p in dirty if p not in current and p not in previous]
    changes.gone_dirs = sorted(p[:-1] for p in changes.deleted if p.endswith("/"))
    changes.deleted = [p for p in changes.deleted if not p.endswith("/")]
    changes.dirs.sort()
    changes.added.sort()
    changes.modified.sort()
    changes.deleted = sorted(set(changes.deleted))
    return changes


# ------------------------------------------------------------------------------------------ journal
def _delta_payload(sets: Mapping[str, Entry], deleted: Iterable[str]) -> str:
    paths = sorted(sets)
    return json.dumps(
        {"set": [[p, *sets[p]] for p in paths], "del": sorted(set(deleted))},
        separators=(",", ":"),
    )


def delta_line(prev_id: str, sets: Mapping[str, Entry], deleted: Iterable[str]) -> tuple[str, str]:
    """One journal line taking the manifest ``prev_id`` to a new one; returns (line, new id). The id
    chains: it hashes the previous id and the delta, so equal ids mean equal manifests."""
    payload = _delta_payload(sets, deleted)
    new_id = hashlib.sha256(f"{prev_id}\n{payload}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f'{{"prev":"{prev_id}","id":"{new_id}","delta":{payload}}}\n', new_id


def apply_delta(manifest: Manifest, sets: Mapping[str, Entry], deleted: Iterable[str]) -> Manifest:
    for p in deleted:
        manifest.pop(p, None)
    manifest.update(sets)
    return manifest


def replay(base_text: str | None, journal_text: str | None, want_id: str) -> Manifest | None:
    """The manifest with id ``want_id``: the base file, then the journal lines that chain from it to
    ``want_id`` (followed backwards by id, so orphan lines of a killed sync are ignored). None when no
    chain reaches ``want_id``: the caller then resends everything."""
    if not base_text:
        return None
    try:
        manifest = manifest_from_json(base_text)[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    base_id = manifest_id_of_json(base_text)
    by_id: dict[str, tuple[str, Any]] = {}
    for line in (journal_text or "").splitlines():
        try:
            doc = json.loads(line)
            by_id[str(doc["id"])] = (str(doc["prev"]), doc["delta"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn line (a sync killed while appending) or garbage: skip it
    chain: list[Any] = []
    current = want_id
    while current != base_id:
        if current not in by_id or len(chain) > len(by_id):
            return None
        current, delta = by_id[current]
        chain.append(delta)
    try:
        for delta in reversed(chain):
            sets = {row[0]: Entry._make(row[1:]) for row in delta["set"]}
            apply_delta(manifest, sets, delta["del"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return manifest
