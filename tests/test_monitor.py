"""The monitor: real probes against a loopback HTTP server and real files, alerts on state change
only, recoveries after a streak, one escalation, timeouts as failures, and state kept in the store."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stageflow.cli import main
from stageflow.errors import ConfigError, UnknownBackendError
from stageflow.monitor.engine import CheckSpec, MonitorConfig, evaluate, monitor_once, run_checks
from stageflow.plugin_manager import load_plugins
from stageflow.stages import CheckResult
from stageflow.store import open_store

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


class Target:
    """A health endpoint whose answer the test controls: status code and delay."""

    def __init__(self):
        self.status, self.delay = 200, 0.0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(target.delay)
                body = b'{"status":"up"}'
                self.send_response(target.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def target():
    t = Target()
    yield t
    t.server.shutdown()


class Recorder:
    def __init__(self):
        self.messages = []

    def notify(self, message):
        self.messages.append(message)


def results(*oks):
    return [CheckResult("api", ok, "detail") for ok in oks]


def step(states, ok, now, **kw):
    transitions, new = evaluate(results(ok), states, now, kw.get("escalate", 15), kw.get("recover", 2))
    return [t.kind for t in transitions], new


def test_state_changes_only_and_escalation_once():
    kinds, s = step({}, True, T0)
    assert kinds == []  # a healthy start is not news
    kinds, s = step(s, False, T0 + timedelta(minutes=1))
    assert kinds == ["alert"]
    kinds, s = step(s, False, T0 + timedelta(minutes=2))
    assert kinds == []  # no repeats
    kinds, s = step(s, False, T0 + timedelta(minutes=16))
    assert kinds == ["escalation"]
    kinds, s = step(s, False, T0 + timedelta(minutes=30))
    assert kinds == []
    kinds, s = step(s, True, T0 + timedelta(minutes=31))
    assert kinds == []  # one good tick is not yet a recovery
    kinds, s = step(s, True, T0 + timedelta(minutes=32))
    assert kinds == ["recovery"]
    assert s["api"]["ok"] and not s["api"]["escalated"]


def test_flapping_target_gives_one_alert_and_one_recovery():
    seen, s = [], {}
    for i, ok in enumerate([True, False, True, False, True, False, True, True, True]):
        kinds, s = step(s, ok, T0 + timedelta(minutes=i))
        seen += kinds
    assert seen == ["alert", "recovery"]


def test_first_result_failing_alerts():
    kinds, _ = step({}, False, T0)
    assert kinds == ["alert"]


def test_http_probe_against_a_real_server(target):
    plugins = load_plugins()
    probe = plugins.build("checks", "http", {"url": target.url, "contains": "up"})
    assert probe.probe().ok
    target.status = 503
    result = probe.probe()
    assert not result.ok and result.detail == f"{target.url} answered HTTP 503"


def test_probe_timeout_is_a_failure_not_a_hang(target):
    target.delay = 2.0
    specs = [CheckSpec(name="api", use="http", options={"url": target.url, "timeout_s": 0.3})]
    [result] = run_checks(load_plugins(), specs, timeout_s=60)
    assert not result.ok and "timed out after 0.3 s" in result.detail


def test_monitor_wide_timeout_fails_a_stuck_probe(target):
    target.delay = 3.0
    specs = [CheckSpec(name="api", use="http", options={"url": target.url, "timeout_s": 10})]
    [result] = run_checks(load_plugins(), specs, timeout_s=0.5)
    assert not result.ok and result.detail == "probe timed out after 0.5 s"


def test_unreachable_target(target):
    target.server.shutdown()
    target.server.server_close()
    probe = load_plugins().build("checks", "http", {"url": target.url, "timeout_s": 1})
    result = probe.probe()
    assert not result.ok and "unreachable: ConnectError" in result.detail


def test_role_probe_detects_the_wrong_role(tmp_path):
    (tmp_path / ".stageflow").mkdir()
    (tmp_path / ".stageflow" / "role").write_text("webserver\n")
    probe = load_plugins().build("checks", "role", {"target": str(tmp_path), "role": "apiserver"})
    result = probe.probe()
    assert not result.ok and "declares role 'webserver', expected 'apiserver'" in result.detail
    missing = load_plugins().build("checks", "role", {"target": str(tmp_path / "x"), "role": "apiserver"})
    assert "missing or empty" in missing.probe().detail


def test_disk_store_and_gpu_probes(tmp_path):
    plugins = load_plugins()
    assert plugins.build("checks", "disk", {"path": str(tmp_path), "min_free_gb": 0}).probe().ok
    assert not plugins.build("checks", "disk", {"path": str(tmp_path), "min_free_gb": 10**9}).probe().ok
    assert not plugins.build("checks", "store", {}).probe().ok  # no store yet
    open_store().close()
    assert plugins.build("checks", "store", {}).probe().detail == "quick_check: ok"
    gpu = plugins.build("checks", "gpu", {"min_gpus": 0}).probe()
    assert gpu.ok  # zero required is always satisfied, with or without a driver


def test_monitor_once_persists_and_notifies_once(target):
    cfg = MonitorConfig(checks=[CheckSpec(name="api", use="http", options={"url": target.url})])
    plugins, store, notes = load_plugins(), open_store(), Recorder()
    monitor_once(plugins, cfg, store, notes, now=T0)
    target.status = 500
    report = monitor_once(plugins, cfg, store, notes, now=T0 + timedelta(minutes=1))
    monitor_once(plugins, cfg, store, notes, now=T0 + timedelta(minutes=2))
    assert [t["kind"] for t in report["transitions"]] == ["alert"]
    assert len(notes.messages) == 1 and notes.messages[0].level == "warning"
    assert "api" in notes.messages[0].text and "HTTP 500" in notes.messages[0].text
    assert store.monitor_states()["api"]["ok"] is False


def test_failed_notification_is_retried_next_tick(target):
    cfg = MonitorConfig(checks=[CheckSpec(name="api", use="http", options={"url": target.url})])
    plugins, store = load_plugins(), open_store()
    target.status = 500

    class Broken:
        def notify(self, message):
            raise RuntimeError("slack down")

    with pytest.raises(RuntimeError):
        monitor_once(plugins, cfg, store, Broken(), now=T0)
    notes = Recorder()
    monitor_once(plugins, cfg, store, notes, now=T0 + timedelta(minutes=1))
    assert len(notes.messages) == 1  # the alert was not lost


def test_unknown_check_backend_fails_before_probing():
    with pytest.raises(UnknownBackendError, match="unknown checks backend 'ping'"):
        run_checks(load_plugins(), [CheckSpec(name="x", use="ping")], 1)


def test_duplicate_check_names_are_a_config_error(tmp_path):
    from stageflow.config import load_config

    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(
        '[[monitor.checks]]\nname = "a"\nuse = "disk"\n[[monitor.checks]]\nname = "a"\nuse = "disk"\n'
    )
    with pytest.raises(ConfigError, match="repeated: a"):
        load_config(cfg)


def test_cli_monitor_once(tmp_path, target, capsys):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(f'[[monitor.checks]]\nname = "api"\nuse = "http"\noptions = {{ url = "{target.url}" }}\n')
    with pytest.raises(SystemExit) as exit_:
        main(["monitor", "--config", str(cfg), "--once", "--json"])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out)["checks"][0]["ok"] is True
    target.status = 500
    with pytest.raises(SystemExit) as exit_:
        main(["monitor", "--config", str(cfg), "--once"])
    assert exit_.value.code == 1
    out = capsys.readouterr()
    assert "FAIL api" in out.out and "-> alert: api" in out.err


def test_cli_monitor_without_checks(tmp_path, capsys):
    (tmp_path / "stageflow.toml").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["monitor", "--config", str(tmp_path / "stageflow.toml"), "--once"])
    assert exit_.value.code == 2 and "no monitor checks configured" in capsys.readouterr().err


def _fake_pm2(tmp_path, apps):
    """A pm2 stand-in on disk (a real process boundary) printing `pm2 jlist`'s JSON shape."""
    script = tmp_path / "pm2"
    listing = json.dumps([{"name": n, "pm2_env": {"status": s}} for n, s in apps.items()])
    script.write_text(f"#!/bin/sh\n[ \"$1\" = jlist ] && printf '%s' '{listing}'\n")
    script.chmod(0o755)
    return str(script)


def test_pm2_probe_catches_another_roles_app(tmp_path):
    plugins = load_plugins()
    ok = _fake_pm2(tmp_path, {"api-server": "online"})
    probe = plugins.build(
        "checks",
        "pm2",
        {"role": "apiserver", "allowed_apps": ["api-server"], "required_apps": ["api-server"], "pm2": ok},
    )
    assert probe.probe().ok
    wrong = _fake_pm2(tmp_path, {"api-server": "online", "web-server": "online"})
    result = plugins.build(
        "checks", "pm2", {"role": "apiserver", "allowed_apps": ["api-server"], "pm2": wrong}
    ).probe()
    assert not result.ok and result.detail == "pm2 runs web-server, not an app of role 'apiserver'"
    stopped = _fake_pm2(tmp_path, {"api-server": "stopped"})
    result = plugins.build(
        "checks",
        "pm2",
        {
            "role": "apiserver",
            "allowed_apps": ["api-server"],
            "required_apps": ["api-server"],
            "pm2": stopped,
        },
    ).probe()
    assert not result.ok and result.detail == "not online: api-server (stopped)"
    missing = plugins.build(
        "checks", "pm2", {"role": "r", "allowed_apps": ["a"], "pm2": str(tmp_path / "nope")}
    )
    assert "not found" in missing.probe().detail
