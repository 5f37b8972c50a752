"""Schedules that really fire, on a real `prefect server start` (loopback):

* `prefect deploy` of the project's prefect.yaml (its real pull step and concurrency limit, the
  monitor's schedule shortened to a few seconds) from a directory that is deleted before a process
  worker starts elsewhere: two scheduled runs complete, and stageflow's own log lines are in them;
* `stageflow serve` twice over the same deployments: scheduled runs complete, and stopping one serve
  leaves the schedules active and the other serve still running them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow
INTERVAL_S = 4


def _project_yaml(root: Path, dest: Path) -> None:
    """The repository's prefect.yaml with only the monitor deployment, on a few-second interval."""
    doc = yaml.safe_load((root / "prefect.yaml").read_text())
    (monitor,) = [d for d in doc["deployments"] if d["name"] == "monitor"]
    monitor["schedules"] = [{"interval": INTERVAL_S}]
    doc["deployments"] = [monitor]
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))


def _config(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    cfg = etc / "stageflow.toml"
    cfg.write_text('[[monitor.checks]]\nname = "disk"\nuse = "disk"\noptions = { min_free_gb = 0 }\n')
    return cfg


def _completed_scheduled(ops, api: str, after: datetime | None = None) -> list[dict]:
    runs = [r for r in ops.flow_runs(api, "monitor") if r["auto_scheduled"]]
    done = [r for r in runs if r["state"]["type"] == "COMPLETED"]
    if after is not None:
        done = [r for r in done if datetime.fromisoformat(r["start_time"]) > after]
    return done


def _spawn(cmd: list, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """A long-running process (serve, worker) whose output goes to a file, never to a pipe: nobody
    reads a pipe until the process stops, and a process that fills one (64 KiB of run logs, more on
    a loaded machine that logs retries) blocks on its next write and stops scheduling runs."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    """Stop ``proc`` (its process group) and return its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return proc.log.read_text(errors="replace")  # type: ignore[attr-defined]


def test_deployed_schedule_fires_on_a_worker_that_never_saw_the_deploy_directory(server, tmp_path, ops):
    api = server["PREFECT_API_URL"]
    project = tmp_path / "project"
    project.mkdir()
    _project_yaml(ops.ROOT, project / "prefect.yaml")
    env = {
        **server,
        "STAGEFLOW_CONFIG": str(_config(tmp_path)),
        "STAGEFLOW_HOME": str(tmp_path / "home"),
    }
    ops.sh([ops.BIN / "stageflow", "pools", "create"], env, project)
    ops.sh([ops.BIN / "prefect", "--no-prompt", "deploy", "--all"], env, project)
    (dep,) = httpx.post(f"{api}/deployments/filter", json={}, timeout=60).json()
    assert dep["pull_steps"] == [{"stageflow.deployments.steps.use_installed_package": {}}]
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    shutil.rmtree(project)  # the worker runs elsewhere: nothing of the deploy directory is left

    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    worker = _spawn(
        [ops.BIN / "prefect", "worker", "start", "--pool", "cpu", "--install-policy", "never"],
        worker_dir,
        {**{k: v for k, v in env.items() if not k.startswith("_")}, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        tmp_path / "worker.log",
    )
    try:
        done = ops.wait_for(
            lambda: (d := _completed_scheduled(ops, api)) and len(d) >= 2 and d,
            300,
            "two scheduled monitor runs to complete on the worker",
            Path(server["_SERVER_LOG"]),
        )
    finally:
        out = _stop(worker)
    runs = ops.flow_runs(api, "monitor")
    crashed = [r["state"]["message"] for r in runs if r["state"]["type"] == "CRASHED"]
    assert not crashed, crashed
    logs = httpx.post(
        f"{api}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [done[0]["id"]]}}, "limit": 200},
        timeout=60,
    ).json()
    ours = [entry["message"] for entry in logs if entry["name"].startswith("stageflow")]
    assert any("monitor tick: 1 checks, 0 failing" in m for m in ours), (ours, out[-3000:])


def _serve(ops, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    return _spawn(
        [ops.BIN / "stageflow", "serve", "--only", "monitor"],
        cwd,
        {**{k: v for k, v in env.items() if not k.startswith("_")}, "PREFECT_RUNNER_POLL_FREQUENCY": "2"},
        log,
    )


def test_serve_schedules_fire_and_one_serve_stopping_never_pauses_the_other(server, tmp_path, ops):
    api = server["PREFECT_API_URL"]
    project = tmp_path / "project"
    project.mkdir()
    _project_yaml(ops.ROOT, project / "prefect.yaml")
    env = {
        **server,
        "STAGEFLOW_CONFIG": str(_config(tmp_path)),
        "STAGEFLOW_HOME": str(tmp_path / "home"),
    }
    first = _serve(ops, env, project, tmp_path / "serve-1.log")
    second = _serve(ops, env, project, tmp_path / "serve-2.log")
    try:
        ops.wait_for(
            lambda: len(_completed_scheduled(ops, api)) >= 2,
            300,
            "two scheduled runs to complete under stageflow serve",
            Path(server["_SERVER_LOG"]),
        )
        out = _stop(second)
        stopped_at = datetime.now(UTC)
        (dep,) = httpx.post(
            f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["monitor"]}}}, timeout=60
        ).json()
        assert dep["paused"] is False, out[-2000:]
        assert all(s["active"] for s in dep["schedules"]), dep["schedules"]
        # the surviving serve keeps the schedule running:
        try:
            ops.wait_for(
                lambda: len(_completed_scheduled(ops, api, after=stopped_at)) >= 2,
                300,
                "two more scheduled runs after the second serve stopped",
                Path(server["_SERVER_LOG"]),
            )
        except AssertionError as exc:
            tail = (tmp_path / "serve-1.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}\n--- the surviving serve's log ends:\n{tail}") from None
    finally:
        _stop(first)
        _stop(second)
    (dep,) = httpx.post(
        f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["monitor"]}}}, timeout=60
    ).json()
    assert dep["paused"] is False


def test_worker_back_after_a_gap_runs_one_tick_at_a_time(server, tmp_path, ops, capsys):
    """#16 restart experiment, scaled down: a 4 s monitor schedule, the worker away for 60 s, then back.
    The deployment's concurrency limit (1, CANCEL_NEW) must keep the late ticks from running at once."""
    import time

    api = server["PREFECT_API_URL"]
    project = tmp_path / "project"
    project.mkdir()
    _project_yaml(ops.ROOT, project / "prefect.yaml")
    env = {**server, "STAGEFLOW_CONFIG": str(_config(tmp_path)), "STAGEFLOW_HOME": str(tmp_path / "home")}
    ops.sh([ops.BIN / "stageflow", "pools", "create"], env, project)
    ops.sh([ops.BIN / "prefect", "--no-prompt", "deploy", "--all"], env, project)
    gap_started = time.monotonic()
    ops.wait_for(lambda: time.monotonic() - gap_started > 60, 90, "the 60 s gap")
    late = [r for r in ops.flow_runs(api, "monitor") if r["state"]["type"] == "SCHEDULED"]
    worker = _spawn(
        [ops.BIN / "stageflow", "worker", "--pool", "cpu", "--install-policy", "never"],
        tmp_path,
        {**{k: v for k, v in env.items() if not k.startswith("_")}, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        tmp_path / "worker.log",
    )
    most_running = 0
    try:

        def settled() -> bool:
            nonlocal most_running
            runs = ops.flow_runs(api, "monitor")
            most_running = max(most_running, sum(r["state"]["type"] == "RUNNING" for r in runs))
            ids = {r["id"] for r in late}
            return all(
                r["state"]["type"] not in {"SCHEDULED", "PENDING", "RUNNING"} for r in runs if r["id"] in ids
            )

        ops.wait_for(settled, 600, "the late ticks to settle")
    finally:
        _stop(worker)
    states: dict[str, int] = {}
    for r in ops.flow_runs(api, "monitor"):
        if r["id"] in {x["id"] for x in late}:
            states[r["state"]["name"]] = states.get(r["state"]["name"], 0) + 1
    with capsys.disabled():
        print(f"\nworker back after 60 s: {len(late)} late ticks -> {states}; most running {most_running}")
    assert most_running <= 1, states
