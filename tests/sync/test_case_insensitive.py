"""#15.16: on a target whose file system ignores case, protect patterns match without regard to case,
so a source ``.ENV`` (or ``Uploads/x``) cannot land on the target's protected ``.env`` (``uploads/``).

The target is a real case-insensitive, case-preserving file system mounted here: tests/sync/casefs.py
over FUSE (this kernel has no vfat and no ext4 casefold, CONFIG_UNICODE; a mount of either fails).
The probes are the real ones: ``target init`` creates a file and stats its case-swapped name, and
every sync reads the role marker under its swapped name in its one snapshot read. Skipped, with the
reason, where FUSE cannot be mounted (no /dev/fuse, no fusermount3 or mfusepy, not permitted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.sync import casefold
from stageflow.sync.profile import EnvironmentProfile
from stageflow.sync.rules import SelectionRules
from stageflow.sync.target import LocalTarget

CASEFS = Path(__file__).with_name("casefs.py")


@pytest.fixture
def ci_disk(tmp_path: Path) -> Iterator[Path]:
    """A mounted case-insensitive file system (its mount point)."""
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: libfuse itself is missing
        pytest.skip(f"needs mfusepy and libfuse3 (.ci/run installs fuse3): {exc}")
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("needs /dev/fuse and fusermount3 (apt-get install fuse3)")
    backing, mnt = tmp_path / "backing", tmp_path / "ci"
    backing.mkdir()
    mnt.mkdir()
    log = tmp_path / "casefs.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(CASEFS), str(backing), str(mnt)], stderr=out, stdout=out)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"cannot mount a FUSE file system here: {log.read_text(errors='replace')[-300:]}")
        time.sleep(0.05)
    try:
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_file_system_really_ignores_case(ci_disk: Path) -> None:
    (ci_disk / ".env").write_text("KEEP\n")
    assert (ci_disk / ".ENV").read_text() == "KEEP\n"
    assert os.path.samestat(os.stat(ci_disk / ".env"), os.stat(ci_disk / ".Env"))
    assert os.listdir(ci_disk) == [".env"]  # case-preserving


def test_probe_tells_the_two_kinds_apart(ci_disk: Path, tmp_path: Path) -> None:
    assert casefold.probe(LocalTarget(str(ci_disk / "dst"))) is True
    assert casefold.probe(LocalTarget(str(tmp_path / "plain"))) is False
    assert os.listdir(ci_disk / "dst/.stageflow") == []  # the probe file is gone


def protected_target(root: Path) -> None:
    (root / "uploads").mkdir(parents=True)
    (root / "uploads/photo.jpg").write_text("user photo")
    (root / ".env").write_text("KEEP=1\n")


def hostile_source(project) -> None:
    project.write(".ENV", "FROM_SOURCE=1\n")
    project.write(".Env.local", "x")
    project.write("Uploads/new.jpg", "overwrites the user's uploads dir")
    project.write("UPLOADS", "a file where the protected dir is")


@pytest.mark.parametrize("transport", ["local", "rsync", "rsync-over-ssh"])
def test_case_variants_of_protected_paths_never_land_on_them(
    cli, project, ci_disk: Path, fake_ssh: Path, transport: str
) -> None:
    dst = ci_disk / "dst"
    protected_target(dst)
    hostile_source(project)
    keys: dict[str, object] = {
        "target": dst,
        "protect": '[".env*", "uploads/"]',
        "exclude": '["node_modules/"]',
    }
    if transport == "rsync":
        keys["transport"] = '"rsync"'
    if transport == "rsync-over-ssh":
        keys.update(target=f"deploy@host:{dst}", ssh_command=f'"{fake_ssh}"')
    project.env(**keys)
    spec = str(keys["target"])
    extra = ["--ssh-command", str(fake_ssh)] if transport == "rsync-over-ssh" else []
    code, out, err = cli("target", "init", spec, "--role", "apiserver", *extra)
    assert code == 0, err
    assert (dst / casefold.CASE_MARKER).is_file()  # the init probe found it out
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    shipped = json.loads(out)["changes"]["added"]
    assert not any(p.lower().startswith((".env", "uploads")) for p in shipped), shipped
    assert "apps/web/page.js" in shipped
    assert (dst / ".env").read_text() == "KEEP=1\n"
    assert sorted(os.listdir(dst / "uploads")) == ["photo.jpg"]
    assert (dst / "uploads/photo.jpg").read_text() == "user photo"
    names = os.listdir(dst)
    assert ".env" in names and ".ENV" not in names and ".Env.local" not in names and "UPLOADS" not in names


def test_a_target_initialised_before_the_marker_is_detected_at_sync(cli, project, ci_disk: Path) -> None:
    """No case marker (an older target init): the sync's own snapshot probe finds it out."""
    dst = ci_disk / "dst"
    protected_target(dst)
    hostile_source(project)
    project.env(target=dst, protect='[".env*", "uploads/"]')
    assert cli("target", "init", dst, "--role", "apiserver")[0] == 0
    (dst / casefold.CASE_MARKER).unlink()
    code, out, err = cli("sync", project.source, "--env", "api", "--dry-run", "--json")
    assert code == 0, err
    assert not any(p.lower().startswith(".env") for p in json.loads(out)["changes"]["added"])
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (dst / ".env").read_text() == "KEEP=1\n"
    assert sorted(os.listdir(dst / "uploads")) == ["photo.jpg"]


def test_a_case_sensitive_target_still_gets_the_other_case(cli, project) -> None:
    protected_target(project.target)
    project.write(".ENV", "FROM_SOURCE=1\n")
    project.env(protect='[".env*"]')
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    assert not (project.target / casefold.CASE_MARKER).exists()
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert (project.target / ".ENV").read_text() == "FROM_SOURCE=1\n"  # a different file there
    assert (project.target / ".env").read_text() == "KEEP=1\n"


def test_fold_protect_case_matches_any_case_and_changes_the_digest(tmp_path: Path) -> None:
    rules = SelectionRules.from_profile(EnvironmentProfile(role="r", protect=[".env*", "Uploads/"]), tmp_path)
    assert not rules.is_protected(".ENV") and rules.is_protected("Uploads")
    before = rules.digest
    rules.fold_protect_case()
    assert rules.is_protected(".ENV") and rules.is_protected(".eNv.Local") and rules.is_protected("uploads")
    assert rules.skip_tree("UPLOADS") and rules.skip_path("uploads/a.png")
    assert not rules.is_protected("env") and not rules.is_protected("app/env.js")
    assert rules.digest != before
