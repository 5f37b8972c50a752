"""Operations for real: a Prefect server on a loopback port, `stageflow pools create`, `prefect deploy
--all` of a prefect.yaml with module-path entrypoints, a run picked up by `prefect worker start
--run-once`, its artifacts through the REST API, the Prefect UI rendering that run in headless
Chromium, and the GPU Docker pool's template (configured, not run: no Docker engine here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def sh(args, env, cwd, timeout=300):
    proc = subprocess.run(
        [str(a) for a in args],
        env={k: v for k, v in env.items() if not k.startswith("_")},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_deploy_worker_run_artifacts_and_ui(server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    (project / "stageflow.toml").write_text(
        '[[monitor.checks]]\nname = "disk"\nuse = "disk"\noptions = { min_free_gb = 0 }\n'
    )
    env = {
        **server,
        "STAGEFLOW_CONFIG": str(project / "stageflow.toml"),
        "STAGEFLOW_HOME": str(tmp_path / "home"),
    }
    api = server["PREFECT_API_URL"]

    out = sh([BIN / "stageflow", "pools", "create", "--gpu-image", "example/stageflow-gpu:1"], env, project)
    assert "work pool gpu (docker)" in out and "tag 'gpu' = 1" in out
    gpu = json.loads(sh([BIN / "stageflow", "pools", "show", "gpu"], env, project))
    props = gpu["base_job_template"]["variables"]["properties"]
    assert gpu["type"] == "docker"
    assert props["container_create_kwargs"]["default"] == {
        "device_requests": [{"count": -1, "capabilities": [["gpu"]]}]
    }
    assert props["image"]["default"] == "example/stageflow-gpu:1"

    sh([BIN / "prefect", "--no-prompt", "deploy", "--all"], env, project)
    deployments = httpx.post(f"{api}/deployments/filter", json={"limit": 50}, timeout=60).json()
    assert {"video-discovery", "monitor"} <= {d["name"] for d in deployments}

    out = sh([BIN / "prefect", "deployment", "run", "monitor/monitor"], env, project)
    run_id = out.split("UUID:")[1].split()[0]
    sh(
        [BIN / "prefect", "worker", "start", "--pool", "cpu", "--run-once", "--install-policy", "never"],
        env,
        project,
    )
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=60).json()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    artifacts = httpx.post(
        f"{api}/artifacts/filter", json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 10}, timeout=60
    ).json()
    assert [a["key"] for a in artifacts] == ["monitor-checks"]
    table = artifacts[0]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert [(r["name"], r["ok"]) for r in rows] == [("disk", True)]

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("STAGEFLOW_REQUIRE_BROWSER"):
            raise AssertionError("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium not installed: the UI check needs Debian's chromium")
    url = f"{server['PREFECT_UI_URL']}/runs/flow-run/{run_id}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=15000",
        "--window-size=1400,900",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert run["name"] in dom, "the flow run page does not show the run's name"
    shot = Path(os.environ.get("STAGEFLOW_SCREENSHOT_DIR", tmp_path)) / "flow-run.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
