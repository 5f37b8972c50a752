"""Releases mode (hard-linked release dirs, atomic `current` swap, prune, rollback), automatic
rollback on a failing hook, and syncs killed with SIGKILL mid-transfer (both modes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

KILLER_PLUGIN = '''
import os, signal
from stageflow.hookspecs import hookimpl
from stageflow.stages import TransferStats


class Killer:
    """Writes half of the change set into place (as a plain copy would), then SIGKILLs its process."""

    def __init__(self, config):
        pass

    def send(self, source, dest, changes):
        import shutil
        paths = changes.to_send
        for rel in paths[: max(1, len(paths) // 2)]:
            dst = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as fh:
                fh.write(b"PARTIAL")  # a torn file, as a killed in-place copy leaves it
        with open(os.path.join(os.path.dirname(os.path.join(dest, rel)), ".stageflow-tmp-x"), "w") as fh:
            fh.write("temp")
        os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def register_transports(register):
    register("killer", Killer)
'''


def init(cli, project) -> None:
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0


def release_of(project) -> str:
    return os.readlink(project.target / "current").split("/")[-1]


def test_releases_hardlinked_atomic_swap_prune_and_rollback(cli, project, snapshot) -> None:
    project.env(mode='"releases"', keep_releases="2", exclude='["node_modules/", "*.log"]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    first = json.loads(out)["release"]
    assert release_of(project) == first and first.endswith("-nogit")
    project.write("packages/lib/lib.js", "v2\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    second = json.loads(out)["release"]
    assert json.loads(out)["changes"]["modified"] == ["packages/lib/lib.js"]
    rel = project.target / "releases"
    assert (rel / first / "packages/lib/lib.js").read_text() == "lib\n"  # old release untouched
    assert (project.target / "current/packages/lib/lib.js").read_text() == "v2\n"
    # unchanged files are hard links into the previous release, not copies
    assert (rel / first / "apps/web/page.js").stat().st_ino == (
        rel / second / "apps/web/page.js"
    ).stat().st_ino

    code, out, _ = cli("sync", project.source, "--env", "api", "--json")
    assert json.loads(out)["changes"]["modified"] == [] and release_of(project) == second  # no-op: no release

    project.write("packages/lib/lib.js", "v3\n")
    code, out, _ = cli("sync", project.source, "--env", "api", "--json")
    third = json.loads(out)["release"]
    assert sorted(os.listdir(rel)) == [second, third]  # keep_releases = 2

    code, out, err = cli("rollback", project.target)
    assert code == 0 and release_of(project) == second, err
    assert (project.target / "current/packages/lib/lib.js").read_text() == "v2\n"
    code, _, err = cli("rollback", project.target, "--to", third)
    assert code == 0 and release_of(project) == third
    code, _, err = cli("rollback", project.target, "--to", "nope")
    assert code == 2 and "release 'nope' not found" in err
    # the next sync diffs against the rolled-to release's manifest
    cli("rollback", project.target)
    code, out, _ = cli("sync", project.source, "--env", "api", "--json")
    assert json.loads(out)["changes"]["modified"] == ["packages/lib/lib.js"]


def test_failing_hook_in_releases_mode_rolls_back(cli, project) -> None:
    project.env(mode='"releases"')
    init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    good = release_of(project)
    project.write("packages/lib/lib.js", "broken\n")
    project.env(
        mode='"releases"',
        hooks='[{ use = "shell", run = "echo migrating; exit 7" }, { use = "health", '
        'url = "http://127.0.0.1:9/none" }]',
    )
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 1
    line = [ln for ln in err.splitlines() if ln.startswith("stageflow: error:")][0]
    assert "hook 'shell' failed" in line and "exited 7" in line and f"rolled back to release {good}" in line
    doc = json.loads(out)
    assert doc["hooks"] == [{"name": "shell", "status": "failed"}, {"name": "health", "status": "skipped"}]
    assert release_of(project) == good and os.listdir(project.target / "releases") == [good]
    assert (project.target / "current/packages/lib/lib.js").read_text() == "lib\n"


def test_failing_hook_in_place_fails_clearly(cli, project) -> None:
    project.env(hooks='[{ use = "shell", run = "exit 3" }]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "hook 'shell' failed" in err and "Traceback" not in err


def _run_killed(project, tmp_path: Path, make_plugin_dist) -> subprocess.CompletedProcess[str]:
    info = make_plugin_dist("stageflow-killer", {"stageflow_killer": KILLER_PLUGIN})
    env = {k: v for k, v in os.environ.items() if k != "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"}
    env.update(PYTHONPATH=str(info.parent), STAGEFLOW_LOAD_PLUGINS="stageflow-killer")
    return subprocess.run(
        [sys.executable, "-m", "stageflow.cli", "sync", str(project.source), "--env", "api"],
        capture_output=True,
        text=True,
        env=env,
    )


def test_sigkill_in_place_next_sync_repairs_every_file(
    cli, project, tmp_path, make_plugin_dist, snapshot
) -> None:
    project.env(exclude='["node_modules/", "*.log"]')
    init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    (project.target / "unrelated.txt").write_text("not ours")
    for name in ("a", "b", "c", "d"):
        project.write(f"packages/new/{name}.js", name)
    project.write("apps/web/page.js", "web v2\n")
    project.env(exclude='["node_modules/", "*.log"]', transport='"killer"')
    proc = _run_killed(project, tmp_path, make_plugin_dist)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert b"PARTIAL" in b"".join(p.read_bytes() for p in (project.target / "packages/new").glob("*.js"))
    project.env(exclude='["node_modules/", "*.log"]')
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    expected = {
        k: v
        for k, v in snapshot(project.source).items()
        if not k.startswith("node_modules") and not k.endswith(".log")
    }
    expected["unrelated.txt"] = b"not ours"  # nothing else touched
    assert snapshot(project.target) == expected
    assert not (project.target / ".stageflow/pending.json").exists()


def test_sigkill_in_releases_mode_keeps_current_complete(
    cli, project, tmp_path, make_plugin_dist, snapshot
) -> None:
    project.env(mode='"releases"')
    init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    good = release_of(project)
    before = snapshot(project.target / "current")
    for name in ("a", "b", "c", "d"):
        project.write(f"packages/new/{name}.js", name)
    project.env(mode='"releases"', transport='"killer"')
    proc = _run_killed(project, tmp_path, make_plugin_dist)
    assert proc.returncode == -signal.SIGKILL
    assert release_of(project) == good and snapshot(project.target / "current") == before
    assert len(os.listdir(project.target / "releases")) == 2  # the half-built one
    project.env(mode='"releases"')
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    assert sorted(json.loads(out)["changes"]["added"]) == [f"packages/new/{n}.js" for n in "abcd"]
    assert sorted(os.listdir(project.target / "releases")) == sorted([good, release_of(project)])
    assert (project.target / "current/packages/new/a.js").read_text() == "a"
