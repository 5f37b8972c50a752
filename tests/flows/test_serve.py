"""`stageflow serve` for real: a separate process serves prefect.yaml's deployments against the
Prefect API, and a flow run created through the API is picked up and completed by it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


def _wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.slow
def test_serve_runs_a_deployment(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "stageflow.toml").write_text(
        '[[monitor.checks]]\nname = "disk"\nuse = "disk"\noptions = { min_free_gb = 0 }\n'
    )
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: monitor\n"
        "    entrypoint: stageflow.flows.monitor:monitor\n"
        "    work_pool: {name: cpu}\n"
        "    schedules: [{interval: 3600, active: false}]\n"
        "  - name: gpu-only\n"
        "    entrypoint: stageflow.flows.monitor:monitor\n"
        "    serve: false\n"
    )
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "STAGEFLOW_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "stageflow.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        with get_client(sync_client=True) as client:

            def deployment():
                try:
                    return client.read_deployment_by_name("monitor/monitor")
                except ObjectNotFound:
                    return None

            dep = _wait(deployment, 90, "the served deployment")
            assert dep.schedules and dep.schedules[0].active is False
            with pytest.raises(ObjectNotFound):
                client.read_deployment_by_name("monitor/gpu-only")
            run = client.create_flow_run_from_deployment(dep.id)
            final = _wait(
                lambda: (r := client.read_flow_run(run.id)).state.is_final() and r, 120, "the flow run"
            )
            assert final.state.is_completed(), final.state
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert "monitor" in out
