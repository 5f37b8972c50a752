"""The monitor flow and the operations hooks as real Prefect runs: a tick with artifacts, the work-pool
probe against Prefect's API, and the failure hook that notifies with the run's name and state."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect import flow
from stageflow.flows.monitor import monitor

from stageflow.orchestration import notify_failure
from stageflow.plugin_manager import load_plugins


@pytest.fixture
def health_url():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_monitor_flow_tick(tmp_path, health_url):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(
        f'[[monitor.checks]]\nname = "web"\nuse = "http"\noptions = {{ url = "{health_url}" }}\n'
        f'[[monitor.checks]]\nname = "gone"\nuse = "http"\noptions = {{ url = "{health_url}x", '
        "expect_status = [204] }\n"
    )
    state = monitor(str(cfg), return_state=True)
    # a failing check is visible in the run list: a Failed state named for it, the check in its message
    assert state.is_failed() and state.name == "Checks failing", state
    assert state.message == "1 of 2 checks failing: gone: " + f"{health_url}x answered HTTP 200"
    report = state.result(raise_on_failure=False)
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [("web", True), ("gone", False)]
    assert [t["kind"] for t in report["transitions"]] == ["alert"]
    again = monitor(str(cfg), return_state=True).result(raise_on_failure=False)
    assert [t["kind"] for t in again["transitions"]] == []


def test_monitor_flow_all_checks_pass_is_completed(tmp_path, health_url):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(f'[[monitor.checks]]\nname = "web"\nuse = "http"\noptions = {{ url = "{health_url}" }}\n')
    report = monitor(str(cfg))
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [("web", True)]


def test_work_pool_probe_through_the_prefect_api():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="cpu-test", type="process"), overwrite=True)
    plugins = load_plugins()
    result = plugins.build("checks", "work_pool", {"pool": "cpu-test"}).probe()
    assert not result.ok and result.detail == "0 online worker(s) (minimum 1)"
    assert plugins.build("checks", "work_pool", {"pool": "cpu-test", "min_online_workers": 0}).probe().ok
    missing = plugins.build("checks", "work_pool", {"pool": "no-such-pool"}).probe()
    assert not missing.ok and "does not exist" in missing.detail


def test_failed_flow_run_notifies(caplog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stageflow.toml: the default `log` notifier

    @flow(name="always-fails", on_failure=[notify_failure])
    def always_fails():
        raise ValueError("disk full")

    with caplog.at_level(logging.INFO, logger="stageflow.notify"):
        with pytest.raises(ValueError):
            always_fails()
    [record] = [r for r in caplog.records if r.name == "stageflow.notify"]
    assert "of 'always-fails' is Failed" in record.getMessage()
    assert record.levelno == logging.ERROR


def test_monitor_notifies_a_run_that_crashed_before_its_flow_started(tmp_path, health_url):
    """A crash in the pull step or the image pull never reaches a flow hook: the monitor tick tells
    the notifier once, with the run's name and message."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    @flow(name="never-started")
    def never_started():  # pragma: no cover - never runs
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(never_started)
        client.set_flow_run_state(run.id, Crashed(message="pull step failed: no such directory"), force=True)
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(
        '[notify]\nbackend = "log"\noptions = { logger = "ops.crashes" }\n'
        f'[[monitor.checks]]\nname = "web"\nuse = "http"\noptions = {{ url = "{health_url}" }}\n'
    )
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("ops.crashes").addHandler(handler)
    try:
        monitor(str(cfg))
        monitor(str(cfg))
    finally:
        logging.getLogger("ops.crashes").removeHandler(handler)
    told = [r.getMessage() for r in seen if run.name in r.getMessage()]
    assert len(told) == 1, told
    assert "crashed before it started" in told[0] and "pull step failed: no such directory" in told[0]
