"""Issue 18's "done when", end to end through the real video-analysis flow (real Prefect test harness):
a genuine recommendation with a Coupang match reaches needs_review and appears on the review sheet
(gsheets sink on a local Sheets v4 server), in the Prefect review form (the run pauses with its
RunInput) and in the Slack summary (slack notifier on a local chat.postMessage server); a passing
mention of another product in the same video does not reach review.

The video's part-1 result (a realistic transcript + OCR from tests/analysis/labelled_set.json) is put
in the store beforehand, so the flow goes straight to analysis: the rules analyzer, Coupang on
loopback with signed requests, the sinks, the notifier and the pause."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stageflow.video.store import VideoStore

ACCESS_KEY = "ak-candidate-flow"
SECRET_KEY = "sk-candidate-flow-secret"
SLACK_TOKEN = "xoxb-candidate-flow-token"
SHEETS_TOKEN = "ya29.candidate-flow-token"
HERE = Path(__file__).resolve().parents[1] / "analysis"


def _servers():
    spec = importlib.util.spec_from_file_location("analysis_servers_candidate_flow", HERE / "servers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _video() -> dict[str, Any]:
    labelled = json.loads((HERE / "labelled_set.json").read_text(encoding="utf-8"))
    v = next(x for x in labelled["videos"] if x["id"] == "ko-sunscreen")
    transcript = [
        *v["transcript"],
        {"start": 30, "end": 35, "text": "친구가 다이슨 에어랩 쓰던데 저는 아직 안 써봤어요"},
    ]
    record = {
        "id": "file:sunscreen.mp4", "source": "file", "title": v["title"], "duration_s": 40.0,
        "frames_decoded": 0, "frames_kept": 0, "transcript": transcript, "detections": [],
        "ocr": v["ocr"], "candidates": [], "error": None,
    }  # fmt: skip
    return {"record": record, "channel": v["channel"], "catalog": labelled["catalog"]}


def _params(tmp_path: Path, coupang: Any, sheets: Any, slack: Any, channel: dict[str, Any], record: dict):
    from stageflow.flows.video import AnalysisParams

    from stageflow.store import open_store
    from stageflow.video import pipeline as analyze
    from stageflow.video.settings import VideoConfig

    clip = tmp_path / "sunscreen.mp4"
    clip.write_bytes(b"not decoded: the stored result answers")
    config = {
        "transcriber": "",
        "detector": "",
        "ocr": [],
        "commerce": "coupang",
        "coupang": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "base_url": coupang.url,
                    "search_per_hour": 1000},
        "channel": channel,
        "sinks": [{"backend": "gsheets",
                   "options": {"spreadsheet_key": "sheet-1", "access_token": SHEETS_TOKEN,
                               "base_url": sheets.url}}],
        "review_in_ui": True,
        "review_poll_s": 1,
        "review_timeout_s": 300,
    }  # fmt: skip
    config_key = analyze.config_key(VideoConfig.model_validate(config))
    key = f"{analyze.file_id(clip)}|{analyze.sha256_file(clip)}|{config_key}"
    store = open_store()
    try:
        store.upsert_records(
            analyze.RESULTS_TABLE,
            [{"key": key, "record": record, "sha256": "-", "job": None, "inference": {}}],
            key="key",
        )
    finally:
        store.close()
    return AnalysisParams(
        inputs=[str(clip)],
        out=str(tmp_path / "out"),
        video=config,
        notifier="slack",
        notifier_options={"token": SLACK_TOKEN, "channel": "C123", "base_url": slack.url + "/api/"},
    )


def _paused_run(deadline_s: float = 180.0) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PAUSED"])))
    named = FlowFilter(name=FlowFilterName(any_=["video-analysis"]))
    end = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < end:
            runs = client.read_flow_runs(flow_filter=named, flow_run_filter=paused)
            if runs:
                return runs[0]
            time.sleep(0.25)
    raise AssertionError("the video-analysis run never paused")


def test_genuine_recommendation_reaches_sheet_form_and_slack(tmp_path):
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import read_flow_run_input
    from stageflow.flows.video import video_analysis

    from stageflow.store import open_store

    servers = _servers()
    data = _video()
    book = {"sheet-1": {"Review": []}}
    with (
        servers.CoupangServer(ACCESS_KEY, SECRET_KEY, data["catalog"]) as coupang,
        servers.SheetsServer(SHEETS_TOKEN, book) as sheets,
        servers.SlackServer(SLACK_TOKEN) as slack,
    ):
        params = _params(tmp_path, coupang, sheets, slack, data["channel"], data["record"])
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["state"] = video_analysis(params, return_state=True)
            except BaseException as exc:  # surfaced below
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        flow_run = _paused_run()

        store = open_store()
        try:
            rows = VideoStore(store).candidates("file:sunscreen.mp4")
        finally:
            store.close()
        review = [r for r in rows if r["status"] == "needs_review"]
        assert len(review) == 1, [(r["product_name"], r["status"], r["score"]) for r in rows]
        sun = review[0]
        assert "자작나무 수분 선크림" in sun["product_name"] and sun["brand"] == "라운드랩"
        assert sun["commerce"]["product_id"] == "101" and sun["score"] >= 60
        assert all("에어랩" not in r["product_name"] for r in review)  # the passing mention stays out

        # 1. the review sheet: one row per candidate, this one in needs_review with its link
        sheet = book["sheet-1"]["Review"]
        assert sheet[0][:3] == ["id", "video_id", "status"]
        line = next(r for r in sheet[1:] if r[0] == sun["id"])
        assert line[2] == "needs_review" and "자작나무" in line[3] and line[11] == sun["commerce"]["url"]

        # 2. the Prefect review form: the paused run's description and prefilled decisions
        keyset = flow_run.state.state_details.run_input_keyset
        description = read_flow_run_input(keyset["description"], flow_run_id=flow_run.id)
        schema = read_flow_run_input(keyset["schema"], flow_run_id=flow_run.id)
        assert description.startswith("## 1 candidate(s) need review")
        assert f"`{sun['id']}`" in description and "자작나무" in description
        defaults = schema["properties"]["decisions"]["default"]
        assert [(d["candidate_id"], d["action"]) for d in defaults] == [(sun["id"], "keep")]

        # 3. the Slack summary: posted once before the pause, naming the candidate and the count
        (posted,) = slack.posted
        text = json.dumps(posted, ensure_ascii=False)
        assert "자작나무 수분 선크림" in posted["text"] and "needs_review" in posted["text"]
        assert "*needs_review*\\n1" in text
        assert SECRET_KEY not in text and SHEETS_TOKEN not in text

        resume_flow_run(
            flow_run.id,
            run_input={"reviewer": "min", "decisions": [{"candidate_id": sun["id"], "action": "keep"}]},
        )
        worker.join(timeout=300)
        assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
        state = outcome["state"]
        assert state.is_completed(), state
        assert state.result()["review"]["status"] == "resumed"
