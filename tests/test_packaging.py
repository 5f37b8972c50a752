"""The entry-point story end to end: build the stageflow wheel and the example third-party plugin,
install both into a fresh venv, and from a neutral directory check the import root, that
`stageflow plugins` lists the plugin, and that a real Prefect flow uses it by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "stageflow-example-notifier"
FEED = ROOT / "samples" / "youtube_channel_feed.xml"

pytestmark = pytest.mark.slow


def sh(*args, **kw):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel-install")
    wheels = work / "wheels"
    sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        ROOT,
        EXAMPLE,
    )
    venv = work / "venv"
    sh(sys.executable, "-m", "venv", venv)
    sh(venv / "bin" / "python", "-m", "pip", "install", "-q", *sorted(wheels.glob("*.whl")))
    return venv


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGEFLOW_", "PREFECT_", "VIRTUAL_ENV"))}
    env.update(
        STAGEFLOW_HOME=str(tmp / "home"),
        PREFECT_HOME=str(tmp / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


def test_wheel_installs_one_import_root(fresh_venv, tmp_path):
    code = (
        "import importlib.util, json, stageflow, stageflow.flows, stageflow.plugins, stageflow.blocks, "
        "stageflow.deployments\n"
        "print(json.dumps({'top': [n for n in ('flows', 'plugins', 'blocks', 'deployments', 'src') "
        "if importlib.util.find_spec(n)], 'file': stageflow.flows.__file__}))"
    )
    proc = sh(fresh_venv / "bin" / "python", "-c", code, cwd=tmp_path, env=env_for(tmp_path))
    doc = json.loads(proc.stdout)
    assert doc["top"] == []
    assert doc["file"].startswith(str(fresh_venv)) and doc["file"].endswith("stageflow/flows/__init__.py")


def test_wheel_ships_the_warm_tsc_worker_and_the_fast_paths(fresh_venv, tmp_path):
    """Package data: the warm tsc worker's JavaScript is a file in the wheel (build/warmtsc_worker.js),
    read by the installed module; the top-floor fast paths (stageflow.fast) are in the wheel too."""
    code = (
        "import json, stageflow.build.warmtsc as w, stageflow.fast.sync_daemon, stageflow.fast.build\n"
        "from pathlib import Path\n"
        "js = Path(w.__file__).with_name('warmtsc_worker.js')\n"
        "print(json.dumps({'file': str(js), 'same': js.read_text() == w.WORKER_JS, 'n': len(w.WORKER_JS)}))"
    )
    doc = json.loads(
        sh(fresh_venv / "bin" / "python", "-c", code, cwd=tmp_path, env=env_for(tmp_path)).stdout
    )
    assert doc["file"].startswith(str(fresh_venv)) and doc["same"] and doc["n"] > 5000
    assert "use strict" in (ROOT / "src" / "stageflow" / "build" / "warmtsc_worker.js").read_text()


def test_example_plugin_is_listed_and_used_by_a_flow(fresh_venv, tmp_path):
    env = env_for(tmp_path)
    listing = json.loads(
        sh(fresh_venv / "bin" / "stageflow", "plugins", "--json", cwd=tmp_path, env=env).stdout
    )
    notifiers = {b["name"]: b for b in listing["kinds"]["notifiers"]}
    assert notifiers["example-file"]["distribution"] == "stageflow-example-notifier"
    assert notifiers["example-file"]["version"] == "0.1.0"
    assert {p["distribution"] for p in listing["plugins"]} == {"stageflow", "stageflow-example-notifier"}

    out = tmp_path / "notifications.jsonl"
    (tmp_path / "stageflow.toml").write_text(
        f'[notify]\nbackend = "example-file"\noptions = {{ path = "{out}" }}\n\n'
        f'[discover]\nsource = "rss"\noptions = {{ feeds = ["{FEED}"], max_age_days = 100000 }}\n',
        encoding="utf-8",
    )
    run = sh(fresh_venv / "bin" / "stageflow", "discover", "--prefect", "--json", cwd=tmp_path, env=env)
    assert json.loads(run.stdout[run.stdout.index("{") :])["new"] == 2
    assert "Flow run" in run.stderr + run.stdout  # it ran through Prefect
    [line] = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["title"] == "stageflow discovery: 2 new of 2 found"

    disabled = {**env, "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [fresh_venv / "bin" / "stageflow", "discover"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=disabled,
    )
    assert proc.returncode == 2 and "unknown notifiers backend 'example-file' (known: log" in proc.stderr
    assert "example-file," not in proc.stderr  # not among the known ones without autoload
