"""The pm2 and health hooks against real pm2 (the npm package) managing a tiny node HTTP app on a
loopback port. Skipped unless `pm2` is on PATH or STAGEFLOW_TEST_PM2 names its executable (CI
installs it with npm)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import httpx
import pytest

PM2 = os.environ.get("STAGEFLOW_TEST_PM2") or shutil.which("pm2")
pytestmark = pytest.mark.skipif(not PM2 or shutil.which("node") is None, reason="needs node and pm2")

SERVER = """const http = require('http');
http.createServer((req, res) => { res.writeHead(200); res.end('VERSION'); })
  .listen(process.env.PORT, '127.0.0.1');
"""


def test_pm2_start_reload_and_health_with_real_pm2(cli, project, tmp_path, monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PM2_HOME", str(tmp_path / "pm2-home"))
    project.write("apps/api-server/server.js", SERVER.replace("VERSION", "v1"))
    project.write(
        "ecosystem.apiserver.config.cjs",
        "module.exports = { apps: [{ name: 'api-server', script: 'apps/api-server/server.js', "
        f"env: {{ PORT: '{port}' }} }}] }}\n",
    )
    url = f"http://127.0.0.1:{port}/health"
    project.env(
        apps='["api-server"]',
        exclude='["node_modules/", "*.log"]',
        hooks=f'[{{ use = "pm2", config = "ecosystem.apiserver.config.cjs", pm2 = "{PM2}" }}, '
        f'{{ use = "health", url = "{url}", timeout = 60, interval = 0.2 }}]',
    )
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    try:
        code, out, err = cli("sync", project.source, "--env", "api")
        assert code == 0, err
        assert "hook pm2: ok (start ecosystem.apiserver.config.cjs (api-server))" in out
        assert "hook health: ok" in out
        assert httpx.get(url).text == "v1"
        project.write("apps/api-server/server.js", SERVER.replace("VERSION", "v2"))
        code, out, err = cli("sync", project.source, "--env", "api", "--json")
        assert code == 0, err
        hooks = json.loads(out)["hooks"]
        assert hooks == [{"name": "pm2", "status": "ok"}, {"name": "health", "status": "ok"}]
        assert httpx.get(url, timeout=5).text == "v2"  # reloaded: the new code serves
        jlist = subprocess.run([PM2, "jlist"], capture_output=True, text=True).stdout
        assert [p["name"] for p in json.loads(jlist)] == ["api-server"]
    finally:
        subprocess.run([PM2, "kill"], capture_output=True, timeout=60)
