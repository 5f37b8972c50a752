"""The discovery flow as a real Prefect run (session harness): rows, files, artifacts, dedup, and a
failure that writes nothing."""

from __future__ import annotations

import json

import pytest
from stageflow.flows.video import DiscoveryParams, video_discovery
from stageflow.samples import SAMPLES_DIR

from stageflow.config import BackendChoice, load_config
from stageflow.errors import UnknownBackendError
from stageflow.store import open_store

FEED = str(SAMPLES_DIR / "youtube_channel_feed.xml")


def params(tmp_path, **overrides):
    base = dict(
        source="rss",
        options={"feeds": [FEED], "max_age_days": None},
        sinks=[
            BackendChoice(backend="sqlite"),
            BackendChoice(backend="jsonl", options={"directory": str(tmp_path)}),
        ],
    )
    return DiscoveryParams(**{**base, **overrides})


def _artifacts(key: str) -> list[dict]:
    """Artifacts by key through Prefect's REST API. (prefect 3.8.8's client sends explicit nulls for
    unset filters, which its server, with the pydantic here, rejects with 422; so we omit them.)"""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "limit": 10, "sort": "CREATED_DESC"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def test_discovery_flow_end_to_end_and_dedup(tmp_path):
    result = video_discovery(params(tmp_path))
    assert (result["found"], result["new"]) == (2, 2)
    assert result["written"] == {"sqlite": 2, "jsonl": 2}
    store = open_store()
    assert [r["item_id"] for r in store.records("videos")] == ["AbCdEfGhIj0", "OldVideo0001"]
    assert store.count_seen("rss") == 2
    lines = (tmp_path / "videos.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["title"].startswith("요즘 매일 쓰는 립스틱")
    table = _artifacts("video-discovery-new")[0]  # newest first: other flow tests share the API
    assert table["type"] == "table" and "AbCdEfGhIj0" in json.dumps(table["data"])
    assert _artifacts("video-discovery-summary")[0]["data"].count("| sqlite | 2 |") == 1

    again = video_discovery(params(tmp_path))
    assert (again["found"], again["new"]) == (2, 0)
    assert len((tmp_path / "videos.jsonl").read_text().splitlines()) == 2


def test_unknown_sink_fails_before_anything_is_written(tmp_path):
    bad = params(tmp_path, sinks=[BackendChoice(backend="sqlite"), BackendChoice(backend="bigquery")])
    with pytest.raises(UnknownBackendError, match="unknown sinks backend 'bigquery'"):
        video_discovery(bad)
    store = open_store()
    assert store.records("videos") == [] and store.count_seen() == 0


def _slack_server():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "analysis" / "servers.py"
    spec = importlib.util.spec_from_file_location("analysis_servers_discovery", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.SlackServer("xoxb-discovery-token")


def test_flow_and_cli_agree_no_message_when_nothing_is_new(tmp_path, monkeypatch):
    """Issue 15 item 15: the flow posted "0 new" while the CLI did not; both stay quiet now, unless
    [discover] notify_when_empty is set."""
    from stageflow.video.discovery import run_discovery

    with _slack_server() as slack:
        options = {"token": "xoxb-discovery-token", "channel": "C123", "base_url": slack.url + "/api/"}
        p = params(tmp_path, notifier="slack", notifier_options=options)
        first = video_discovery(p)
        assert first["new"] == 2 and len(slack.posted) == 1
        assert video_discovery(p)["new"] == 0 and len(slack.posted) == 1  # the flow: nothing new, no post
        assert run_discovery(p).result()["new"] == 0 and len(slack.posted) == 1  # the CLI's path too
        loud = params(tmp_path, notifier="slack", notifier_options=options, notify_when_empty=True)
        assert video_discovery(loud)["new"] == 0 and len(slack.posted) == 2
        assert "0 new of 2" in json.dumps(slack.posted[-1], ensure_ascii=False)


def _state(home, results):
    """What a discovery run left: the store's video rows and seen items, and the jsonl sink's lines."""
    import sqlite3

    store = open_store(home / "stageflow.db")
    try:
        rows = store.records("videos")
    finally:
        store.close()
    conn = sqlite3.connect(home / "stageflow.db")
    try:
        seen = conn.execute(
            "SELECT source, item_id, content_sha256, title, url, published, data FROM seen_items"
            " ORDER BY source, item_id"
        ).fetchall()
    finally:
        conn.close()
    lines = [json.loads(line) for line in (results / "videos.jsonl").read_text().splitlines()]
    return rows, seen, lines


def test_cli_and_flow_run_the_same_sequence(tmp_path, monkeypatch, capsys):
    """Discovery exists once (issue 13): ``stageflow discover --json`` and the video-discovery flow, on
    the same feed in two fresh homes, return the same result and leave the same store and sink rows,
    first run and re-run."""
    from stageflow.cli import main
    from stageflow.plugin_manager import reset_plugin_manager

    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(f'[discover]\nsource = "rss"\noptions = {{ feeds = ["{FEED}"], max_age_days = 100000 }}\n')

    def cli_run():
        try:
            main(["discover", "--config", str(cfg), "--json"])
        except SystemExit as exc:
            assert exc.code in (0, None)
        return json.loads(capsys.readouterr().out)

    results = {}
    for how in ("cli", "flow"):
        home = tmp_path / f"home-{how}"
        monkeypatch.setenv("STAGEFLOW_HOME", str(home))
        reset_plugin_manager()
        if how == "cli":
            runs = [cli_run(), cli_run()]
        else:
            project = load_config(cfg)  # [discover] as the CLI reads it; default sinks
            p = DiscoveryParams.from_sections(project.discover, project.notify)
            runs = [video_discovery(p), video_discovery(p)]
        for r in runs:
            assert r.pop("home") == str(home)
        results[how] = (runs, _state(home, home / "results"))

    (cli_runs, cli_state), (flow_runs, flow_state) = results["cli"], results["flow"]
    assert cli_runs == flow_runs
    assert cli_runs[0] == {"found": 2, "new": 2, "written": {"sqlite": 2, "jsonl": 2}}
    assert cli_runs[1] == {"found": 2, "new": 0, "written": {"sqlite": 0, "jsonl": 0}}
    assert cli_state == flow_state
    rows, seen, lines = cli_state
    assert (
        [r["id"] for r in rows] == [line["id"] for line in lines] == ["rss:AbCdEfGhIj0", "rss:OldVideo0001"]
    )
    assert [s[1] for s in seen] == ["AbCdEfGhIj0", "OldVideo0001"]
