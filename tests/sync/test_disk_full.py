"""#15.13 wording on the sync side, on real faults: a target on a real full filesystem (a small tmpfs
mounted here; skipped with the reason when mounting is not permitted) makes every transport say the
disk is full, never "check its owner and permissions", with exit 1 and one line; and a role marker
that is not UTF-8 is exit 3 on the ssh path too (the local path: tests/security/test_target_symlinks.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FULL = "the target's disk is full: free space on it and sync again"


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("stageflow: error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=4096,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and mount rights): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> None:
    """Fill the filesystem to the last byte."""
    with open(disk / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    assert os.statvfs(disk).f_bavail == 0


@pytest.mark.parametrize("transport", ["local", "rsync", "rsync-over-ssh"])
def test_a_file_larger_than_the_free_space_says_the_disk_is_full(
    cli, project, small_disk: Path, fake_ssh: Path, transport: str
) -> None:
    dst = small_disk / "dst"
    project.write("big.bin", "x" * 600_000)
    keys: dict[str, object] = {"target": dst}
    if transport == "rsync":
        keys["transport"] = '"rsync"'
    if transport == "rsync-over-ssh":
        keys.update(target=f"deploy@host:{dst}", ssh_command=f'"{fake_ssh}"')
    project.env(**keys)
    assert cli("target", "init", dst, "--role", "apiserver")[0] == 0
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 1, err
    line = one_line_error(err)
    assert "No space left on device" in line and FULL in line and "permissions" not in line, line
    assert not (dst / "big.bin").exists()


def test_a_full_disk_while_writing_state_says_the_disk_is_full(cli, project, small_disk: Path) -> None:
    """Files that need no space (empty ones) fit, the state stageflow writes does not."""
    dst = small_disk / "dst"
    for rel in ("apps/api-server/index.js", "apps/web/page.js", "packages/lib/lib.js", "server.log"):
        project.write(rel, "")
    project.env(target=dst, exclude='["node_modules/"]')
    assert cli("target", "init", dst, "--role", "apiserver")[0] == 0
    fill(small_disk)
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 1, err
    line = one_line_error(err)
    assert "No space left on device" in line and FULL in line and "permissions" not in line, line
    (small_disk / "filler").unlink()
    code, _, err = cli("sync", project.source, "--env", "api")  # with space again, it completes
    assert code == 0, err
    assert (dst / "apps/web/page.js").exists()


def test_non_utf8_role_marker_over_ssh_is_exit_3(cli, project, fake_ssh: Path) -> None:
    marker = project.target / ".stageflow" / "role"
    marker.parent.mkdir(parents=True)
    marker.write_bytes(b"\xff\xfeapiserver\n")
    project.env(target=f"deploy@host:{project.target}", ssh_command=f'"{fake_ssh}"')
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3, err
    assert "role" in one_line_error(err)
    assert sorted(p.name for p in project.target.iterdir()) == [".stageflow"]
