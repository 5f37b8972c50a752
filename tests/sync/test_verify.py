"""Hand edits on a target (#15 item 9): ``stageflow sync --verify`` compares the target's real files
with the manifest (type, size, mtime, mode; ``--checksum``: content) and repairs drift: re-ships
edited and deleted files, removes files added by hand, never touches excluded or protected paths;
and the monitor's read-only ``drift`` probe goes red on drift and green after the repair. Local and
over a real sshd (rsync transport)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest


def _ssh_fixtures():
    path = Path(__file__).with_name("test_ssh.py")
    spec = importlib.util.spec_from_file_location("_verify_ssh", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_ssh = _ssh_fixtures()
sshd = _ssh.sshd


def _probe(**options):
    from stageflow.plugin_manager import get_plugin_manager

    return get_plugin_manager().build("checks", "drift", options).probe()


def _hand_edit(deployed: Path) -> None:
    """Delete one shipped file, edit another, add one by hand; touch only skipped paths otherwise."""
    (deployed / "apps/web/page.js").unlink()
    (deployed / "packages/lib/lib.js").write_text("hacked on the server\n")
    (deployed / "apps/api-server/stray.js").write_text("added by hand\n")
    (deployed / "uploads").mkdir(exist_ok=True)
    (deployed / "uploads/photo.jpg").write_text("user photo\n")  # protected
    (deployed / "server.log").write_text("runtime log\n")  # excluded


def _assert_repaired(project, deployed: Path) -> None:
    for rel in ("apps/web/page.js", "packages/lib/lib.js", "apps/api-server/index.js"):
        assert (deployed / rel).read_bytes() == (project.source / rel).read_bytes(), rel
        assert (deployed / rel).stat().st_mtime_ns == (project.source / rel).stat().st_mtime_ns, rel
    assert not (deployed / "apps/api-server/stray.js").exists()
    assert (deployed / "uploads/photo.jpg").read_text() == "user photo\n"
    assert (deployed / "server.log").read_text() == "runtime log\n"


def _env(project, **keys) -> None:
    project.env(exclude='["node_modules/", "*.log"]', protect='["uploads/"]', **keys)


def _verify_and_probe(cli, project, deployed: Path, spec: str, **probe_opts) -> None:
    config = str(project.source / "stageflow.toml")
    assert _probe(config=config, environment="api", **probe_opts).ok
    _hand_edit(deployed)
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    assert json.loads(out)["changes"]["modified"] == []  # a plain sync never notices
    red = _probe(config=config, environment="api", **probe_opts)
    assert not red.ok
    assert "1 edited (packages/lib/lib.js)" in red.detail and "1 missing (apps/web/page.js)" in red.detail
    assert "1 extra (apps/api-server/stray.js)" in red.detail and "uploads" not in red.detail
    # Without the project's rules the probe cannot judge extra files, only the manifest's own paths.
    bare = _probe(target=spec, **({"ssh_command": probe_opts["ssh_command"]} if probe_opts else {}))
    assert not bare.ok and "extra" not in bare.detail and "1 missing" in bare.detail
    code, out, err = cli("sync", project.source, "--env", "api", "--verify", "--dry-run", "--json")
    assert code == 0, err
    assert (deployed / "packages/lib/lib.js").read_text() == "hacked on the server\n"  # dry run
    code, out, err = cli("sync", project.source, "--env", "api", "--verify", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["drift"]["edited"] == ["packages/lib/lib.js"]
    assert doc["drift"]["missing"] == ["apps/web/page.js"]
    assert doc["drift"]["extra"] == ["apps/api-server/stray.js"]
    assert any(w.startswith(f"drift on {spec}: ") and w.endswith("repaired") for w in doc["warnings"])
    _assert_repaired(project, deployed)
    assert _probe(config=config, environment="api", **probe_opts).ok
    code, out, err = cli("sync", project.source, "--env", "api", "--verify")
    assert code == 0, err
    assert "paths match the manifest" in out


def test_verify_repairs_hand_edits_in_place(cli, project) -> None:
    _env(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    assert cli("sync", project.source, "--env", "api")[0] == 0
    _verify_and_probe(cli, project, project.target, str(project.target))


def test_verify_repairs_the_current_release(cli, project) -> None:
    _env(project, mode='"releases"')
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    assert cli("sync", project.source, "--env", "api")[0] == 0
    before = os.readlink(project.target / "current")
    _verify_and_probe(cli, project, project.target / "current", str(project.target))
    assert os.readlink(project.target / "current") != before  # repaired as a new release


def _same_size_same_mtime_edit(project, deployed: Path) -> None:
    victim = deployed / "packages/lib/lib.js"
    st = (project.source / "packages/lib/lib.js").stat()
    victim.write_text("LIB\n")  # same size as "lib\n"
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))


def _checksum_case(cli, project, deployed: Path, **probe_opts) -> None:
    config = str(project.source / "stageflow.toml")
    _same_size_same_mtime_edit(project, deployed)
    code, out, err = cli("sync", project.source, "--env", "api", "--verify", "--json")
    assert code == 0, err
    assert json.loads(out)["drift"]["edited"] == []  # size and mtime match: invisible without --checksum
    assert _probe(config=config, environment="api", **probe_opts).ok
    assert not _probe(config=config, environment="api", checksum=True, **probe_opts).ok
    code, out, err = cli("sync", project.source, "--env", "api", "--verify", "--checksum", "--json")
    assert code == 0, err
    assert json.loads(out)["drift"]["edited"] == ["packages/lib/lib.js"]
    assert (deployed / "packages/lib/lib.js").read_text() == "lib\n"
    assert _probe(config=config, environment="api", checksum=True, **probe_opts).ok


def test_verify_checksum_finds_same_size_same_mtime_edit(cli, project) -> None:
    _env(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    assert cli("sync", project.source, "--env", "api")[0] == 0
    _checksum_case(cli, project, project.target)


def test_checksum_without_verify_is_refused(cli, project) -> None:
    _env(project)
    code, _, err = cli("sync", project.source, "--env", "api", "--checksum")
    assert code == 2 and "--checksum only applies to --verify" in err


@pytest.mark.skipif(
    not os.path.exists(_ssh.SSHD) or shutil.which("rsync") is None, reason="needs openssh-server and rsync"
)
def test_verify_over_real_ssh_repairs_and_probe(cli, project, sshd) -> None:
    from stageflow.sync.target import close_masters

    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    _env(project, ssh_command=f'"{sshd.ssh_command}"', target=remote)
    try:
        assert cli("target", "init", remote, "--role", "apiserver", "--ssh-command", sshd.ssh_command)[0] == 0
        assert cli("sync", project.source, "--env", "api")[0] == 0
        _verify_and_probe(cli, project, project.target, remote, ssh_command=sshd.ssh_command)
        _checksum_case(cli, project, project.target, ssh_command=sshd.ssh_command)
    finally:
        close_masters(sshd.ssh_command)


def test_verify_on_a_first_sync_removes_nothing(cli, project) -> None:
    """Files already on a target no sync wrote are not drift: a first sync with --verify keeps them."""
    _env(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    (project.target / "preexisting.txt").write_text("was here before\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--verify", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["drift"] is None and any("no recorded manifest" in w for w in doc["warnings"])
    assert (project.target / "preexisting.txt").read_text() == "was here before\n"
