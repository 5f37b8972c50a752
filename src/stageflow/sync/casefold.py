"""Case-insensitive deploy targets (macOS APFS/HFS+, SMB/CIFS shares, FAT/exFAT, ext4 casefold):
there ``.ENV`` from the source lands on the target's protected ``.env``, so protect patterns must
match without regard to case. This module finds out which kind of file system a target is on.

Two probes, both on the real target:

- :func:`probe` (``stageflow target init``): creates a file in ``.stageflow`` and stats its
  case-swapped name; the answer is recorded as the marker ``.stageflow/case-insensitive``.
- :func:`from_snapshot` (every sync, no extra round trip and no write): the sync's one snapshot read
  asks for the role marker under its case-swapped name as well (``.STAGEFLOW/ROLE``); a
  case-sensitive file system has no such file, a case-insensitive one returns the marker itself.
  The marker written by ``target init`` counts too.

Never removes anything but its own probe file.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from stageflow.sync.target import STATE_DIR, LocalTarget, SshTarget

#: Written by ``stageflow target init`` on a target whose file system ignores case.
CASE_MARKER = f"{STATE_DIR}/case-insensitive"
#: The role marker's name with every letter's case swapped (the sync-time probe reads it).
SWAPPED_ROLE_MARKER = f"{STATE_DIR}/role".swapcase()
#: What the sync's snapshot reads for :func:`from_snapshot` (besides the role marker).
SNAPSHOT_FILES = (SWAPPED_ROLE_MARKER, CASE_MARKER)


def probe(target: LocalTarget | SshTarget) -> bool:
    """Create ``.stageflow/case-probe-<random>`` on the target, stat ``.STAGEFLOW/CASE-PROBE-<RANDOM>``
    and remove the probe: True when the swapped name finds the same file."""
    name = f"{STATE_DIR}/case-probe-{secrets.token_hex(4)}x"
    if isinstance(target, LocalTarget):
        path, swapped = target.join(name), target.join(name.swapcase())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.close(fd)
            try:
                return os.path.samestat(os.lstat(path), os.lstat(swapped))
            except FileNotFoundError:
                return False
        finally:
            os.unlink(path)
    q = target._q  # noqa: SLF001 - the target's own quoting of a path under its root
    proc = target.sh(
        f"mkdir -p {q(STATE_DIR)} && : > {q(name)} && "
        f"if [ {q(name)} -ef {q(name.swapcase())} ]; then r=insensitive; else r=sensitive; fi; "
        f'rm -f {q(name)}; echo "$r"'
    )
    return proc.stdout.strip() == "insensitive"


def record(target: LocalTarget | SshTarget, insensitive: bool) -> None:
    """Write (or remove) the case marker to match what :func:`probe` found."""
    if insensitive:
        target.write_text(
            CASE_MARKER,
            "this target's file system ignores case: protect patterns match case-insensitively\n",
        )
    elif target.read_text(CASE_MARKER) is not None:
        target.remove(CASE_MARKER)


def from_snapshot(snapshot: Any) -> bool:
    """Whether the sync's snapshot (which read ROLE_MARKER, SWAPPED_ROLE_MARKER and CASE_MARKER)
    shows a case-insensitive target."""
    role = snapshot.read_text(f"{STATE_DIR}/role")
    swapped = snapshot.read_text(SWAPPED_ROLE_MARKER)
    return snapshot.read_text(CASE_MARKER) is not None or (role is not None and swapped == role)
