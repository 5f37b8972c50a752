"""A `--prefect` run killed with -9 (ephemeral server, its SQLite database under PREFECT_HOME) is set
Crashed the next time stageflow starts, and notified; a live run of another process is left alone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def _repo(root: Path, ticks: Path) -> Path:
    repo = root / "repo"
    (repo / "pkgs/slow").mkdir(parents=True)
    (repo / "package.json").write_text(
        json.dumps({"name": "root", "private": True, "workspaces": ["pkgs/*"]})
    )
    (repo / "pkgs/slow/package.json").write_text(
        json.dumps(
            {
                "name": "slow",
                "version": "1.0.0",
                "scripts": {"build": f"while :; do date +%s%N >> {ticks}; sleep 0.2; done"},
            }
        )
    )
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, env={**os.environ, **env}
        )
    return repo


def _runs(db: Path) -> list[tuple[str, str, str]]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("select name, state_type, coalesce(state_name, '') from flow_run").fetchall()
    except sqlite3.OperationalError:  # created but not migrated yet
        return []


def _kill_writers(ticks: Path) -> None:
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(ticks) in part for part in p.info["cmdline"] or []):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def test_a_prefect_run_killed_with_9_is_crashed_at_the_next_start(tmp_path, ops):
    ticks = tmp_path / "ticks"
    repo = _repo(tmp_path, ticks)
    (repo / "stageflow.toml").write_text('[notify]\nbackend = "log"\noptions = { logger = "ops.orphan" }\n')
    home = tmp_path / "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STAGEFLOW_"))}
    env.update(
        PREFECT_HOME=str(home),
        STAGEFLOW_HOME=str(tmp_path / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    db = home / "prefect.db"
    build = subprocess.Popen(
        [ops.BIN / "stageflow", "build", str(repo), "--force", "--prefect"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ops.wait_for(lambda: ticks.is_file() and ticks.stat().st_size > 100, 240, "the build to be writing")
        (run,) = ops.wait_for(lambda: [r for r in _runs(db) if r[1] == "RUNNING"], 60, "a Running flow run")
        build.send_signal(signal.SIGKILL)  # the stageflow process only: nothing of it reports anything
        build.wait(timeout=30)
        assert [r for r in _runs(db) if r[0] == run[0]][0][1] == "RUNNING"
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait(timeout=30)
        _kill_writers(ticks)

    # the next --prefect start (a quick monitor tick) finds it
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        '[notify]\nbackend = "log"\noptions = { logger = "ops.orphan" }\n'
        '[[monitor.checks]]\nname = "disk"\nuse = "disk"\noptions = { min_free_gb = 0 }\n'
    )
    nxt = subprocess.run(
        [ops.BIN / "stageflow", "monitor", "--once", "--prefect", "-c", cfg],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = nxt.stdout + nxt.stderr
    assert nxt.returncode == 0, out[-3000:]
    assert f"flow run {run[0]}: Crashed (pid {build.pid} is gone)" in out, out[-3000:]
    assert "of 'selective-build' is Crashed | its process" in out, out[-3000:]  # the notice
    states = {name: state for name, state, _ in _runs(db)}
    assert states[run[0]] == "CRASHED", states
    assert sorted(states.values()) == ["COMPLETED", "CRASHED"], states
