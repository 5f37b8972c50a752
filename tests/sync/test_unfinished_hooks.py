"""Releases mode killed while a hook runs (#15 item 4): a real ``kill -9`` of the sync's process group
while its shell hook waits on a condition leaves the new release live with its hook unfinished; the
next sync says so and runs the hooks again (``unfinished_hooks = "rerun"``, the default), rolls the
release back when they fail again, or rolls it back at once (``unfinished_hooks = "rollback"``). On
the local transport and over a real sshd."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))


def _ssh_fixtures():
    path = Path(__file__).with_name("test_ssh.py")
    spec = importlib.util.spec_from_file_location("_unfinished_hooks_ssh", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_ssh = _ssh_fixtures()
sshd = _ssh.sshd


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


class Hook:
    """A shell hook that logs each run, drops a marker, waits for ``go``, and fails while ``fail``
    exists: the test kills the sync between the marker and ``go``."""

    def __init__(self, tmp_path: Path):
        self.log, self.marker = tmp_path / "hook-runs.log", tmp_path / "hook-started"
        self.go, self.fail = tmp_path / "hook-go", tmp_path / "hook-fail"

    def toml(self) -> str:
        run = (
            f"echo run >> {self.log}; touch {self.marker}; "
            f"while [ ! -e {self.go} ]; do sleep 0.05; done; [ ! -e {self.fail} ]"
        )
        return f"[{{ use = \"shell\", run = '{run}' }}]"

    def runs(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


def _kill_during_hook(project, hook: Hook) -> None:
    """Start `stageflow sync` in its own process group, wait until the hook runs, SIGKILL the group."""
    hook.go.unlink(missing_ok=True)
    hook.marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [STAGEFLOW, "sync", str(project.source), "--env", "api"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "STAGEFLOW_SYNC_SERVER": "0"},
    )
    try:
        _wait(lambda: hook.marker.exists() or proc.poll() is not None, "the hook to start")
        assert proc.poll() is None, "the sync ended before its hook ran"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hook.go.touch()  # a hook left running on the far side (ssh) may finish now


def _current(project) -> str:
    return os.readlink(project.target / "current").rsplit("/", 1)[-1]


def _setup(cli, project, tmp_path, remote: str | None = None, ssh: str | None = None, **keys) -> Hook:
    hook = Hook(tmp_path)
    hook.go.touch()
    extra = {"ssh_command": f'"{ssh}"', "target": remote} if remote else {}
    project.env(mode='"releases"', exclude='["node_modules/", "*.log"]', hooks=hook.toml(), **extra, **keys)
    init = ["--ssh-command", ssh] if ssh else []
    assert cli("target", "init", remote or project.target, "--role", "apiserver", *init)[0] == 0
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert hook.runs() == 1
    return hook


def _rerun_after_kill(cli, project, hook: Hook) -> None:
    first = _current(project)
    project.write("packages/lib/lib.js", "v2\n")
    _kill_during_hook(project, hook)
    assert hook.runs() == 2
    killed = _current(project)
    assert killed != first  # the new release went live before its hooks ran
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert hook.runs() == 3, "the next sync did not run the unfinished hooks again"
    assert doc["unfinished"]["release"] == killed and doc["unfinished"]["action"] == "finished"
    assert doc["hooks"] == [{"name": "shell", "status": "ok"}]
    assert any("unfinished hooks" in w and "ran them again" in w for w in doc["warnings"])
    assert _current(project) == killed and doc["release"] == killed
    assert (project.target / "current/packages/lib/lib.js").read_text() == "v2\n"
    # Finished: a later no-change sync neither re-runs them nor reports anything unfinished.
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert hook.runs() == 3 and doc["unfinished"] is None
    assert doc["hooks"] == [{"name": "shell", "status": "skipped"}]


def test_kill_9_during_a_hook_next_sync_runs_it_again(cli, project, tmp_path) -> None:
    hook = _setup(cli, project, tmp_path)
    _rerun_after_kill(cli, project, hook)


def test_kill_9_during_a_hook_then_it_fails_again_rolls_back(cli, project, tmp_path) -> None:
    hook = _setup(cli, project, tmp_path)
    first = _current(project)
    project.write("packages/lib/lib.js", "v2\n")
    _kill_during_hook(project, hook)
    killed = _current(project)
    hook.fail.touch()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 1, (out, err)
    assert "unfinished hooks" in err and f"rolled back to release {first}" in err
    doc = json.loads(out)
    assert doc["unfinished"] == {
        "release": killed,
        "action": "rolled back",
        "to": first,
        "hooks": [{"name": "shell", "status": "failed"}],
    }
    assert _current(project) == first and not (project.target / "releases" / killed).exists()
    assert (project.target / "current/packages/lib/lib.js").read_text() == "lib\n"
    # Fixed: the next sync ships v2 again as a new release, its hooks run once.
    hook.fail.unlink()
    runs = hook.runs()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["changes"]["modified"] == ["packages/lib/lib.js"] and hook.runs() == runs + 1
    assert (project.target / "current/packages/lib/lib.js").read_text() == "v2\n"


def test_unfinished_hooks_rollback_policy(cli, project, tmp_path) -> None:
    hook = _setup(cli, project, tmp_path, unfinished_hooks='"rollback"')
    first = _current(project)
    project.write("packages/lib/lib.js", "v2\n")
    _kill_during_hook(project, hook)
    killed = _current(project)
    code, out, err = cli("sync", project.source, "--env", "api", "--dry-run", "--json")
    assert code == 0, err
    assert any("a sync will roll it back" in w for w in json.loads(out)["warnings"])
    assert _current(project) == killed  # a dry run writes nothing
    runs = hook.runs()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["unfinished"]["action"] == "rolled back" and doc["unfinished"]["to"] == first
    assert any("rolled back to " + first in w for w in doc["warnings"])
    # Rolled back to the first release, then the change ships again as a fresh release.
    # (The fresh release may reuse the removed one's id within the same second.)
    assert doc["changes"]["modified"] == ["packages/lib/lib.js"] and doc["release"] != first
    assert hook.runs() == runs + 1 and _current(project) == doc["release"]


@pytest.mark.skipif(not os.path.exists(_ssh.SSHD), reason="needs openssh-server and openssh-client")
def test_kill_9_during_a_hook_over_real_ssh_next_sync_runs_it_again(cli, project, tmp_path, sshd) -> None:
    from stageflow.sync.target import close_masters

    remote = f"{sshd.user}@127.0.0.1:{project.target}"
    try:
        hook = _setup(cli, project, tmp_path, remote=remote, ssh=sshd.ssh_command)
        _rerun_after_kill(cli, project, hook)
    finally:
        close_masters(sshd.ssh_command)


def test_in_place_kill_9_during_a_hook_next_sync_runs_it_again(cli, project, tmp_path) -> None:
    """In place the state is committed after the hooks: the pending journal makes the next sync
    re-send the interrupted change set, so its hooks run again."""
    hook = Hook(tmp_path)
    hook.go.touch()
    project.env(exclude='["node_modules/", "*.log"]', hooks=hook.toml())
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    assert cli("sync", project.source, "--env", "api")[0] == 0
    project.write("packages/lib/lib.js", "v2\n")
    _kill_during_hook(project, hook)
    assert hook.runs() == 2
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert hook.runs() == 3 and doc["hooks"] == [{"name": "shell", "status": "ok"}]
    assert doc["changes"]["modified"] == ["packages/lib/lib.js"]


def test_killed_between_the_switch_and_the_state_write(cli, project, tmp_path) -> None:
    """The narrower window: ``current`` already names the new release, the state still the old one
    and the pending journal the new one (what a kill right after the switch leaves)."""
    hook = _setup(cli, project, tmp_path)
    first = _current(project)
    project.write("packages/lib/lib.js", "v2\n")
    assert cli("sync", project.source, "--env", "api")[0] == 0
    second = _current(project)
    state = project.target / ".stageflow/state.json"
    doc = json.loads(state.read_text())
    first_manifest = (project.target / f".stageflow/manifests/{first}.json").read_text()
    from stageflow.sync.manifest import manifest_id_of_json

    state.write_text(
        json.dumps({**doc, "release": first, "manifest_id": manifest_id_of_json(first_manifest)})
    )
    (project.target / ".stageflow/pending.json").write_text(
        json.dumps({"mode": "releases", "release": second, "previous": first})
    )
    runs = hook.runs()
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["unfinished"]["release"] == second and doc["unfinished"]["action"] == "finished"
    assert hook.runs() == runs + 1 and doc["changes"]["modified"] == []
    assert json.loads(state.read_text())["release"] == second
    assert not (project.target / ".stageflow/pending.json").exists()
