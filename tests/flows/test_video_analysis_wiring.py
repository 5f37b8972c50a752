"""The wired video-analysis flow under the Prefect test harness: decode -> inference child -> record ->
analyze (candidates, clip, thumbnail, store) -> gsheets sink -> one Slack summary, against the loopback
servers of tests/analysis; the same video again adds no row, sheet line or message. And the
``review-sync`` flow applying the review sheet's statuses through the status machine."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from stageflow.video.store import VideoStore

SHEETS_TOKEN = "ya29.flow-test-token"
SLACK_TOKEN = "xoxb-flow-test-token"


def _servers():
    path = Path(__file__).resolve().parents[1] / "analysis" / "servers.py"
    spec = importlib.util.spec_from_file_location("analysis_servers_flows", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from stageflow.video import synthetic as s

    root = tmp_path_factory.mktemp("wiring")
    good = s.make_video(
        root / "review.mp4",
        [s.Scene(1.5, "HELLO"), s.Scene(1.5, "LOGITECH MX MASTER", (255, 255, 200))],
        size=(640, 360),
    )
    bad = root / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    return {"good": good, "bad": bad}


def test_video_analysis_flow_end_to_end(material, tmp_path):
    from stageflow.flows.video import AnalysisParams, video_analysis

    from stageflow.store import open_store

    servers = _servers()
    with (
        servers.SheetsServer(SHEETS_TOKEN, {"sheet-1": {"Review": []}}) as sheets,
        servers.SlackServer(SLACK_TOKEN) as slack,
    ):
        sheet = {"spreadsheet_key": "sheet-1", "access_token": SHEETS_TOKEN, "base_url": sheets.url}
        params = AnalysisParams(
            inputs=[str(material["bad"]), str(material["good"])],
            out=str(tmp_path / "out"),
            video={
                "transcriber": "",
                "detector": "",
                "ocr": ["rapidocr"],
                "sinks": [{"backend": "gsheets", "options": sheet}],
            },
            notifier="slack",
            notifier_options={"token": SLACK_TOKEN, "channel": "C123", "base_url": slack.url + "/api/"},
        )
        doc = video_analysis(params)
        bad, good = doc["videos"]
        assert "corrupt or truncated" in bad["error"] and bad["candidates"] == []
        assert good["error"] is None and "sink_errors" not in doc
        [cand] = good["candidates"]
        # read from the caption's box (how the engine spaces the words varies with the kept frames)
        name = cand["product_name"]
        assert (name.replace(" ", ""), cand["status"]) == ("LOGITECHMXMASTER", "no_commerce_match")
        assert Path(cand["clip"]).is_file() and Path(cand["thumbnail"]).is_file()
        assert 0 <= cand["start"] <= cand["end"] <= good["duration_s"]
        rows = sheets.sheets["sheet-1"]["Review"]
        assert [r[0] for r in rows] == ["id", cand["id"]] and rows[1][2] == "no_commerce_match"
        [posted] = slack.posted
        assert posted["text"].startswith("video analysis: 1 candidates from 2 videos")
        assert name in posted["text"] and "corrupt or truncated" in posted["text"]

        again = video_analysis(params)  # the same videos again: nothing duplicated anywhere
        assert again["videos"][1]["candidates"] == [cand]
        assert len(sheets.sheets["sheet-1"]["Review"]) == 2 and len(slack.posted) == 1
    store = open_store()
    try:
        assert [r["id"] for r in VideoStore(store).candidates()] == [cand["id"]]
        assert len(VideoStore(store).status_history(cand["id"])) == 4
    finally:
        store.close()


def test_review_sync_flow_applies_sheet_statuses(tmp_path):
    from stageflow.flows.review import review_sync

    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.store import open_store
    from stageflow.video.analysis.engine import analyze_video
    from stageflow.video.analysis.rules import RulesAnalyzer

    servers = _servers()
    video = {
        "id": "vid-1",
        "title": "desk setup",
        "duration_s": 30.0,
        "transcript": [
            {
                "start": 0.0,
                "end": 5.0,
                "text": "this Logitech MX Master is my favorite mouse, I use it daily",
            },
        ],
        "ocr": [
            {"t": 2.0, "text": "Logitech MX Master", "confidence": 0.9},
            {"t": 20.0, "text": "Dyson Airwrap", "confidence": 0.9},
        ],
    }
    with servers.SheetsServer(SHEETS_TOKEN, {"sheet-1": {"Review": []}}) as sheets:
        options = {"spreadsheet_key": "sheet-1", "access_token": SHEETS_TOKEN, "base_url": sheets.url}
        store = open_store()
        try:
            recs = analyze_video(video, analyzer=RulesAnalyzer(), store=store).to_output()
        finally:
            store.close()
        assert [r["status"] for r in recs] == ["no_commerce_match", "no_commerce_match"]
        get_plugin_manager().build("sinks", "gsheets", options).write("candidates", recs)
        rows = sheets.sheets["sheet-1"]["Review"]
        rows[1][2] = "needs_review"  # a link was added by hand: allowed
        rows[2][2] = "published"  # not allowed from no_commerce_match: reported, not applied
        config = tmp_path / "stageflow.toml"
        config.write_text(
            '[video]\nsinks = [{backend = "gsheets", options = {spreadsheet_key = "sheet-1", '
            f'access_token = "{SHEETS_TOKEN}", base_url = "{sheets.url}"}}}}]\n',
            encoding="utf-8",
        )
        report = review_sync(config_path=str(config))
        assert report["changed"] == [{"id": rows[1][0], "from": "no_commerce_match", "to": "needs_review"}]
        assert len(report["errors"]) == 1 and "published" in report["errors"][0]
        rows[1][2] = "approved"
        assert [c["to"] for c in review_sync(options)["changed"]] == ["approved"]
    store = open_store()
    try:
        assert VideoStore(store).candidate_status(rows[1][0]) == "approved"
        assert VideoStore(store).candidate_status(rows[2][0]) == "no_commerce_match"
        assert [h["actor"] for h in VideoStore(store).status_history(rows[1][0])][-2:] == ["sheet", "sheet"]
    finally:
        store.close()


def test_a_run_where_every_video_failed_ends_failed_and_partial_failures_warn(material, tmp_path):
    from prefect.client.orchestration import get_client
    from stageflow.flows.video import AnalysisParams, video_analysis

    video = {"transcriber": "", "detector": "", "ocr": []}
    state = video_analysis(
        AnalysisParams(inputs=[str(material["bad"])], out=str(tmp_path / "o1"), video=video),
        return_state=True,
    )
    assert state.is_failed() and "1 of 1 videos failed; first: " in state.message
    doc = state.result(raise_on_failure=False)
    assert "corrupt or truncated" in doc["videos"][0]["error"]
    partial = video_analysis(
        AnalysisParams(
            inputs=[str(material["bad"]), str(material["good"])], out=str(tmp_path / "o2"), video=video
        ),
        return_state=True,
    )
    assert partial.is_completed() and partial.name == "Completed with failures"
    assert partial.message.startswith("1 of 2 videos failed; first: ")
    assert [v["error"] is None for v in partial.result()["videos"]] == [False, True]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts()
    warning = [
        a
        for a in arts
        if a.key == "video-analysis-warnings" and a.flow_run_id == partial.state_details.flow_run_id
    ]
    assert warning and "bad.mp4" in warning[0].data
    # the UI's view of where the run is: a progress artifact per stage (a video that failed in a stage
    # is past it too) and the wall time per stage and video
    mine = [a for a in arts if a.flow_run_id == partial.state_details.flow_run_id]
    bars = {a.description: a.data for a in mine if a.type == "progress"}
    assert bars == {
        f"{stage}: videos past this stage (of 2)": done
        for stage, done in [
            ("fetch", 100),
            ("decode", 100),
            ("transcribe", 50),
            ("look", 50),
            ("analyze", 50),
        ]
    }
    (timings,) = [json.loads(a.data) for a in mine if a.key == "video-analysis-timings"]
    bad, good = sorted(timings, key=lambda row: row["transcribe"] is not None)
    assert bad["decode"] is not None and bad["transcribe"] is None
    assert all(isinstance(good[k], float) for k in ("fetch", "decode", "transcribe", "look", "analyze"))
