"""A configured Prefect API that is down or hangs gives one clear line (exit 1) instead of Prefect's
long retry loop; commands that do not need Prefect are unaffected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def stageflow(*args, api: str, cwd):
    env = {**os.environ, "PREFECT_API_URL": api, "STAGEFLOW_HOME": str(cwd / "home")}
    return subprocess.run(
        [sys.executable, "-m", "stageflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


@pytest.fixture
def hanging_port():
    """Accepts connections (backlog) but never answers: a hung server."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize(
    "args", [["pools", "create"], ["blocks", "register"], ["monitor", "--once", "--prefect"]]
)
def test_down_server_is_one_line(args, closed_port, tmp_path):
    proc = stageflow(*args, api=f"http://127.0.0.1:{closed_port}/api", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"stageflow: error: Prefect API at http://127.0.0.1:{closed_port}/api is unreachable (ConnectError): "
        "start the server (`prefect server start`) or unset PREFECT_API_URL to use the embedded one"
    ]


def test_hanging_server_times_out_clearly(hanging_port, tmp_path):
    proc = stageflow("serve", api=f"http://127.0.0.1:{hanging_port}/api", cwd=tmp_path)
    assert proc.returncode == 1 and "is unreachable (ReadTimeout)" in proc.stderr


def test_commands_without_prefect_do_not_care(closed_port, tmp_path):
    proc = stageflow("plugins", "--json", api=f"http://127.0.0.1:{closed_port}/api", cwd=tmp_path)
    assert proc.returncode == 0 and '"plugin_api": 1' in proc.stdout
