"""Restarts in 24/7 mode against a real Prefect server: SIGTERM to `stageflow serve` in the middle of
a selective build whose build script keeps writing; the run must end Crashed (not "Running" for
good), the build's process group must be gone, and the crash must be notified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow


def _monorepo(root: Path, ticks: Path) -> Path:
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
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    return repo


def _writers(ticks: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(ticks) in part for part in p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_sigterm_to_serve_mid_build_crashes_the_run_kills_the_build_and_notifies(server, tmp_path, ops):
    api = server["PREFECT_API_URL"]
    ticks = tmp_path / "ticks"
    repo = _monorepo(tmp_path, ticks)
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text('[notify]\nbackend = "log"\noptions = { logger = "ops.crash" }\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: selective-build\n"
        "    entrypoint: stageflow.flows.selective_build:selective_build\n"
        f"    parameters: {{params: {{repo: {repo}, force: true}}}}\n"
    )
    env = {
        **{k: v for k, v in server.items() if not k.startswith("_")},
        "STAGEFLOW_CONFIG": str(cfg),
        "STAGEFLOW_HOME": str(tmp_path / "home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    serve = subprocess.Popen(
        [ops.BIN / "stageflow", "serve"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        dep = ops.wait_for(
            lambda: httpx.post(f"{api}/deployments/filter", json={}, timeout=60).json(),
            120,
            "the served deployment",
        )[0]
        run = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run", json={}, timeout=60).json()
        ops.wait_for(lambda: ticks.is_file() and ticks.stat().st_size > 200, 180, "the build to be writing")
        assert httpx.get(f"{api}/flow_runs/{run['id']}", timeout=60).json()["state"]["type"] == "RUNNING"
        serve.send_signal(signal.SIGTERM)  # the serve process only, as systemd or docker stop do
        out = serve.communicate(timeout=120)[0]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.communicate(timeout=30)
    state = ops.wait_for(
        lambda: (
            (s := httpx.get(f"{api}/flow_runs/{run['id']}", timeout=60).json()["state"])["type"]
            in {"CRASHED", "CANCELLED", "FAILED"}
            and s
        ),
        60,
        "the run to leave Running",
    )
    ops.wait_for(lambda: not _writers(ticks), 30, "the build's processes to be gone")
    assert state["type"] == "CRASHED", state
    assert "ops.crash" in out and "is Crashed" in out, out[-3000:]
    assert serve.returncode == 0 and "Traceback" not in out, out[-3000:]


def test_sigterm_to_stageflow_worker_mid_build_crashes_the_run_and_kills_the_build(server, tmp_path, ops):
    """SIGTERM to `stageflow worker` (a wrapped `prefect worker start`) while its run builds: the run
    ends Crashed and the build's processes are gone (bare `prefect worker start` leaves it Running)."""
    api = server["PREFECT_API_URL"]
    ticks = tmp_path / "ticks"
    repo = _monorepo(tmp_path, ticks)
    project = tmp_path / "project"
    project.mkdir()
    (project / "prefect.yaml").write_text(
        "pull:\n  - stageflow.deployments.steps.use_installed_package: {}\n"
        "deployments:\n"
        "  - name: selective-build\n"
        "    entrypoint: stageflow.flows.selective_build:selective_build\n"
        "    work_pool: {name: cpu}\n"
        f"    parameters: {{params: {{repo: {repo}, force: true}}}}\n"
    )
    env = {
        **{k: v for k, v in server.items() if not k.startswith("_")},
        "STAGEFLOW_HOME": str(tmp_path / "home"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    ops.sh([ops.BIN / "stageflow", "pools", "create"], env, project)
    ops.sh([ops.BIN / "prefect", "--no-prompt", "deploy", "--all"], env, project)
    worker = subprocess.Popen(
        [ops.BIN / "stageflow", "worker", "--pool", "cpu", "--install-policy", "never"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        (dep,) = httpx.post(f"{api}/deployments/filter", json={}, timeout=60).json()
        run = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run", json={}, timeout=60).json()
        ops.wait_for(lambda: ticks.is_file() and ticks.stat().st_size > 200, 180, "the build to be writing")
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=120)[0]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=30)
    state = ops.wait_for(
        lambda: (
            (s := httpx.get(f"{api}/flow_runs/{run['id']}", timeout=60).json()["state"])["type"]
            in {"CRASHED", "CANCELLED", "FAILED"}
            and s
        ),
        60,
        "the run to leave Running",
    )
    ops.wait_for(lambda: not _writers(ticks), 30, "the build's processes to be gone")
    assert state["type"] in {"CRASHED", "CANCELLED"}, state
