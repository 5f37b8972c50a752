"""Deploy hooks through the CLI against real processes: env-file (mode 600, secret never printed),
shell, template-merge, pm2 (a fake `pm2` on PATH that records argv) and health (a real HTTP server)."""

from __future__ import annotations

import json
import stat

ECOSYSTEM = "module.exports = { apps: [{ name: 'api-server', script: 'index.js' }] }\n"


def init(cli, project) -> None:
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0


def test_env_file_from_env_var_mode_600_never_printed(cli, project, monkeypatch) -> None:
    secret = "DB_PASSWORD=hunter2-very-secret"
    monkeypatch.setenv("API_ENV_FILE", secret)
    project.env(hooks='[{ use = "env-file", env = "API_ENV_FILE" }]', protect='[".env*"]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    path = project.target / ".env.production"
    assert path.read_text() == secret + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "hunter2" not in out + err
    monkeypatch.delenv("API_ENV_FILE")
    project.write("packages/lib/lib.js", "v2")
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "API_ENV_FILE is not set" in err


def test_env_file_needs_exactly_one_source(cli, project) -> None:
    project.env(hooks='[{ use = "env-file" }]')
    init(cli, project)
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "exactly one of 'secret'" in err


def test_template_merge_with_backup(cli, project) -> None:
    project.write("package.json", json.dumps({"name": "app", "scripts": {"start": "node a"}}))
    project.write(
        "deploy/scripts.apiserver.json", json.dumps({"scripts": {"start": "node api", "migrate": "m"}})
    )
    project.env(hooks='[{ use = "template-merge", template = "deploy/scripts.apiserver.json" }]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    merged = json.loads((project.target / "package.json").read_text())
    assert merged["scripts"] == {"start": "node api", "migrate": "m"} and merged["name"] == "app"
    backups = list(project.target.glob("package.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["scripts"] == {"start": "node a"}


def test_pm2_start_when_absent_reload_when_running_then_save(cli, project, fake_pm2, monkeypatch) -> None:
    project.write("ecosystem.apiserver.config.cjs", ECOSYSTEM)
    project.env(apps='["api-server"]', hooks='[{ use = "pm2", config = "ecosystem.apiserver.config.cjs" }]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert fake_pm2.read_text().splitlines() == ["jlist", "start ecosystem.apiserver.config.cjs", "save"]
    fake_pm2.write_text("")
    monkeypatch.setenv("FAKE_PM2_RUNNING", json.dumps([{"name": "api-server", "pid": 1}]))
    project.write("packages/lib/lib.js", "v2")
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert fake_pm2.read_text().splitlines() == [
        "jlist",
        "reload ecosystem.apiserver.config.cjs --update-env",
        "save",
    ]
    monkeypatch.setenv("FAKE_PM2_FAIL", "1")
    project.write("packages/lib/lib.js", "v3")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "pm2 reload ecosystem.apiserver.config.cjs exited 1: pm2 boom" in err


def test_health_retries_until_2xx(cli, project, health_server) -> None:
    health_server.status[:] = [503, 502, 200]
    project.env(hooks=f'[{{ use = "health", url = "{health_server.url}", interval = 0.05 }}]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    assert json.loads(out)["hooks"] == [{"name": "health", "status": "ok"}]
    assert len(health_server.hits) == 3


def test_health_times_out_and_rolls_back_release(cli, project, health_server) -> None:
    project.env(mode='"releases"')
    init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    health_server.status[:] = [500]
    project.write("packages/lib/lib.js", "v2")
    project.env(
        mode='"releases"',
        hooks=f'[{{ use = "health", url = "{health_server.url}", timeout = 0.3, interval = 0.05, '
        "request_timeout = 60 }]",
    )
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "HTTP 500" in err and "rolled back to release" in err
    assert (project.target / "current/packages/lib/lib.js").read_text() == "lib\n"


def test_pm2_config_pm2_would_run_as_a_script_is_bad_input(cli, project) -> None:
    project.write("ecosystem.config.apiserver.cjs", ECOSYSTEM)
    project.env(hooks='[{ use = "pm2", config = "ecosystem.config.apiserver.cjs" }]')
    init(cli, project)
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "pm2 would run 'ecosystem.config.apiserver.cjs' as a script" in err
    assert sorted(p.name for p in project.target.iterdir()) == [".stageflow"]


FREEZE_PLUGIN = """
import os
from pathlib import Path
from pydantic import BaseModel, ConfigDict
from stageflow.errors import Refused
from stageflow.hookspecs import hookimpl
from stageflow.sync.hooks import HookOutcome


class FreezeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flag: str = "FREEZE"


class FreezeHook:
    def __init__(self, config):
        self.config = config

    def preflight(self, context):
        seen = f"{context.environment} {context.profile.role} {sorted(context.other_apps())}"
        Path(os.environ["FREEZE_SEEN"]).write_text(seen)
        if (context.source / self.config.flag).exists():
            raise Refused(f"deploy freeze: {self.config.flag} is set in {context.environment}")

    def run(self, context):
        context.target.write_text(context.path("freeze-hook-ran"), "yes")
        return HookOutcome("freeze", "ok")


@hookimpl
def register_deploy_hooks(register):
    register("freeze", FreezeHook, config=FreezeConfig, description="refuses while a FREEZE file exists")
"""


def test_third_party_hook_preflight_refusal_stops_sync_before_anything_is_written(
    cli, project, make_plugin_dist, monkeypatch, snapshot, tmp_path
) -> None:
    """A plugin hook's ``preflight`` is part of the safety net: its Refused exits 3 and the target is
    exactly as before (no file, no manifest, no lock, no earlier hook run); once it passes, the sync
    and the hook run."""
    monkeypatch.delenv("STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD")
    make_plugin_dist("stageflow-freeze", {"sf_freeze": FREEZE_PLUGIN})
    seen = tmp_path / "preflight-saw.txt"
    monkeypatch.setenv("FREEZE_SEEN", str(seen))
    project.config(
        f"""
        [sync.environments.api]
        role = "apiserver"
        target = "{project.target}"
        apps = ["api-server"]
        hooks = [{{ use = "shell", run = "echo ran > shell-hook-ran" }}, {{ use = "freeze" }}]
        [sync.environments.web]
        role = "webserver"
        target = "/nowhere"
        apps = ["web-server"]
        """
    )
    project.write("FREEZE", "")
    init(cli, project)
    before = snapshot(project.target, skip_state=False)
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 3, err
    assert "deploy freeze: FREEZE is set in api" in err
    assert snapshot(project.target, skip_state=False) == before
    assert seen.read_text() == "api apiserver ['web-server']"
    (project.source / "FREEZE").unlink()
    code, out, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert (project.target / "shell-hook-ran").read_text() == "ran\n"
    assert (project.target / "freeze-hook-ran").read_text() == "yes"
