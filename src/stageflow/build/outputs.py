"""Build outputs: find a workspace's declared outputs, pack them (with the build log) into one
uncompressed tar, restore such an archive, and fingerprint outputs on disk.

Restores are staged in a temporary directory beside the outputs and then moved into place, so an
unreadable archive never leaves half-restored outputs. Never deletes anything outside the declared
outputs of the workspace it is given.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stageflow.build.model import CacheEntryCorrupt
from stageflow.build.probe import expand, fingerprint

LOG_MEMBER = ".stageflow-log"
META_MEMBER = ".stageflow-meta.json"

__all__ = ["expand", "fingerprint", "missing", "pack", "unpack"]


def missing(ws_path: Path, patterns: Sequence[str]) -> list[str]:
    """Declared outputs that do not exist after a build."""
    return [p for p in patterns if not expand(ws_path, [p])]


def pack(ws_path: Path, patterns: Sequence[str], log: str, meta: dict[str, object], dest: Path) -> None:
    """Write outputs + log + meta as a tar at ``dest`` (the caller renames it into place)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((LOG_MEMBER, log.encode()), (META_MEMBER, json.dumps(meta).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for item in expand(ws_path, patterns):
            tar.add(item, arcname=item.relative_to(ws_path).as_posix())


def unpack(archive: Path, ws_path: Path, patterns: Sequence[str]) -> str:
    """Replace the workspace's outputs with the archive's; return the recorded log.
    CacheEntryCorrupt when the archive cannot be read (outputs are then left as they were)."""
    staging = Path(tempfile.mkdtemp(prefix=".stageflow-restore-", dir=ws_path))
    try:
        try:
            with tarfile.open(archive, "r") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise CacheEntryCorrupt(f"{archive.name}: unreadable cache entry ({exc})") from None
        log_file = staging / LOG_MEMBER
        if not log_file.is_file() or not (staging / META_MEMBER).is_file():
            raise CacheEntryCorrupt(f"{archive.name}: cache entry lacks its log or metadata")
        log = log_file.read_text(encoding="utf-8", errors="replace")
        log_file.unlink()
        (staging / META_MEMBER).unlink()
        for old in expand(ws_path, patterns):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        for entry in staging.iterdir():
            target = ws_path / entry.name
            if not target.exists():
                os.replace(entry, target)  # whole tree in one rename (the common `dist/` case)
                continue
            for dirpath, _, files in os.walk(entry):
                for name in files:
                    src = Path(dirpath) / name
                    dst = ws_path / src.relative_to(staging)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
        return log
    finally:
        shutil.rmtree(staging, ignore_errors=True)
