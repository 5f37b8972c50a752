"""Review in the Prefect UI (issue 6 item 7), for real: the video-analysis flow runs against the test
harness with ``review_in_ui``; the test waits for the run to be Paused, reads the form's schema and
description back from the API, resumes it with ``resume_flow_run(run_input=...)`` as the UI does, and
checks the store's statuses and status_history. And the timeout: candidates stay needs_review and the
run completes."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stageflow.video.store import VideoStore

ACCESS_KEY = "ak-review-ui"
SECRET_KEY = "sk-review-ui-secret"
CATALOG = [
    {"productId": 1, "productName": "라운드랩 자작나무 수분 선크림 50ml", "productPrice": 19900,
     "productImage": "https://img/1.jpg", "productUrl": "https://www.coupang.com/vp/products/1",
     "isRocket": True, "isFreeShipping": True, "categoryName": "선케어"},
    {"productId": 2, "productName": "로지텍 MX Master 3S 무선 마우스", "productPrice": 139000,
     "productImage": "https://img/2.jpg", "productUrl": "https://www.coupang.com/vp/products/2",
     "isRocket": True, "isFreeShipping": True, "categoryName": "마우스"},
]  # fmt: skip
RECORD: dict[str, Any] = {
    "id": "file:review.mp4", "source": "file", "title": "데일리 루틴", "duration_s": 60.0,
    "frames_decoded": 0, "frames_kept": 0,
    "transcript": [
        {"start": 0.0, "end": 5.0,
         "text": "요즘 매일 쓰고 있는 라운드랩 자작나무 선크림 보여드릴게요! 진짜 너무 좋아요! "
                 "완전 강추! 촉촉하고 효과 최고, 사랑해요 행복해요 내돈내산 재구매"},
        {"start": 30.0, "end": 35.0,
         "text": "this Logitech MX Master is my favorite mouse, I use it every day, "
                 "let me show you! really so good, love it, so happy! I bought it"},
    ],
    "detections": [],
    "ocr": [{"t": 2.0, "text": "라운드랩 자작나무 선크림", "confidence": 0.95, "box": [0, 0, 9, 9]},
            {"t": 32.0, "text": "Logitech MX Master 3S", "confidence": 0.9, "box": [0, 0, 9, 9]}],
    "candidates": [], "error": None,
}  # fmt: skip


def _servers():
    path = Path(__file__).resolve().parents[1] / "analysis" / "servers.py"
    spec = importlib.util.spec_from_file_location("analysis_servers_review_ui", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def coupang():
    with _servers().CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as server:
        yield server


def _params(tmp_path: Path, coupang, **video: Any):
    """Flow params for one video whose part-1 result is already in the store (so the flow goes straight
    to analysis: rules analyzer, Coupang on loopback -> two candidates in needs_review)."""
    from stageflow.flows.video import AnalysisParams

    from stageflow.store import open_store
    from stageflow.video import pipeline as analyze
    from stageflow.video.settings import VideoConfig

    clip = tmp_path / "review.mp4"
    clip.write_bytes(b"not decoded: the stored result answers")
    config = {
        "transcriber": "",
        "detector": "",
        "ocr": [],
        "commerce": "coupang",
        "coupang": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "base_url": coupang.url,
                    "search_per_hour": 1000},
        "channel": {"subscribers": 1_000_000, "engagement_rate": 0.05, "consistency": 0.8,
                    "authenticity": 0.9},
        "review_in_ui": True,
        "review_poll_s": 1,
        **video,
    }  # fmt: skip
    config_key = analyze.config_key(VideoConfig.model_validate(config))
    key = f"{analyze.file_id(clip)}|{analyze.sha256_file(clip)}|{config_key}"
    store = open_store()
    try:
        store.upsert_records(
            analyze.RESULTS_TABLE,
            [{"key": key, "record": RECORD, "sha256": "-", "job": None, "inference": {}}],
            key="key",
        )
    finally:
        store.close()
    return AnalysisParams(inputs=[str(clip)], out=str(tmp_path / "out"), video=config)


def _paused_run(deadline_s: float = 180.0):
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


def test_review_form_resumed_with_decisions(tmp_path, coupang):
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import read_flow_run_input
    from stageflow.flows.video import video_analysis

    from stageflow.store import open_store

    params = _params(tmp_path, coupang, review_timeout_s=300)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["state"] = video_analysis(params, return_state=True)
        except BaseException as exc:  # surfaced below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    flow_run = _paused_run()
    assert flow_run.state.state_details.pause_key == "candidate-review"
    keyset = flow_run.state.state_details.run_input_keyset
    schema = read_flow_run_input(keyset["schema"], flow_run_id=flow_run.id)
    description = read_flow_run_input(keyset["description"], flow_run_id=flow_run.id)

    store = open_store()
    try:
        sun, mouse = VideoStore(store).candidates("file:review.mp4", status="needs_review")
        # meanwhile a reviewer approves the mouse in the sheet: the UI's "reject" for it must not apply
        VideoStore(store).set_candidate_status(
            mouse["id"], "approved", actor="sheet", reason="review sheet row 3"
        )
    finally:
        store.close()

    assert description.startswith("## 2 candidate(s) need review")
    assert f"| `{sun['id']}` | 라운드랩 자작나무 선크림 | 라운드랩 | {sun['score']} (" in description
    assert "[link](https://link.coupang.com/a/" in description and "within 300 s" in description
    defaults = schema["properties"]["decisions"]["default"]
    assert [(d["candidate_id"], d["action"]) for d in defaults] == [
        (sun["id"], "keep"),
        (mouse["id"], "keep"),
    ]
    item = schema["$defs"]["ReviewItem"]["properties"]
    assert item["action"]["enum"] == ["keep", "approve", "reject", "revise"]
    assert set(schema["properties"]) == {"reviewer", "decisions"}

    with pytest.raises(RuntimeError, match="is not one of"):  # the server validates against the schema
        resume_flow_run(flow_run.id, run_input={"decisions": [{"candidate_id": sun["id"], "action": "ship"}]})
    resume_flow_run(
        flow_run.id,
        run_input={
            "reviewer": "alice",
            "decisions": [
                {"candidate_id": sun["id"], "action": "approve",
                 "product_name": "라운드랩 자작나무 수분 선크림", "note": "matches the link"},
                {"candidate_id": mouse["id"], "action": "reject"},
            ],
        },
    )  # fmt: skip
    worker.join(timeout=300)
    assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
    state = outcome["state"]
    assert state.is_completed()
    review = state.result()["review"]
    assert review["status"] == "resumed" and review["reviewer"] == "prefect-ui:alice"
    assert review["changed"] == [
        {
            "id": sun["id"],
            "from": "needs_review",
            "to": "approved",
            "product_name": "라운드랩 자작나무 수분 선크림",
        }
    ]
    assert review["errors"] == [
        f"{mouse['id']}: candidate {mouse['id']}: status 'approved' cannot become 'rejected' "
        "(allowed next: published)"
    ]
    store = open_store()
    try:
        row = VideoStore(store).candidate(sun["id"])
        assert (row["status"], row["product_name"]) == ("approved", "라운드랩 자작나무 수분 선크림")
        last = VideoStore(store).status_history(sun["id"])[-1]
        assert (last["old_status"], last["new_status"], last["actor"], last["reason"]) == (
            "needs_review", "approved", "prefect-ui:alice", "matches the link",
        )  # fmt: skip
        assert VideoStore(store).candidate_status(mouse["id"]) == "approved"
        assert [h["actor"] for h in VideoStore(store).status_history(mouse["id"])][-1] == "sheet"
    finally:
        store.close()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.is_completed()
    # issue 16 item 7: the candidates table shows the statuses after the review, not needs_review
    table = _latest_artifact("video-analysis-candidates", flow_run.id)
    data = table["data"] if isinstance(table["data"], list) else json.loads(table["data"])
    assert {r["id"]: r["status"] for r in data} == {sun["id"]: "approved", mouse["id"]: "approved"}


def _latest_artifact(key: str, flow_run_id) -> dict:
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={
            "artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [str(flow_run_id)]}},
            "limit": 1,
            "sort": "CREATED_DESC",
        },
        timeout=60,
    )
    response.raise_for_status()
    [artifact] = response.json()
    return artifact


def test_review_form_timeout_leaves_needs_review_and_completes(tmp_path, coupang):
    from stageflow.flows.video import video_analysis

    from stageflow.store import open_store

    state = video_analysis(_params(tmp_path, coupang, review_timeout_s=2), return_state=True)
    assert state.is_completed(), state
    review = state.result()["review"]
    assert review["status"] == "timed out"
    assert review["message"] == "review timed out after 2 s; 2 candidate(s) stay needs_review"
    store = open_store()
    try:
        rows = VideoStore(store).candidates("file:review.mp4")
        assert [r["status"] for r in rows] == ["needs_review", "needs_review"]
        assert all(h["actor"] == "flow" for r in rows for h in VideoStore(store).status_history(r["id"]))
    finally:
        store.close()


def test_review_off_by_parameter_never_pauses(tmp_path, coupang):
    from stageflow.flows.video import video_analysis

    params = _params(tmp_path, coupang, review_timeout_s=3600).model_copy(update={"review_in_ui": False})
    doc = video_analysis(params)
    assert "review" not in doc
    assert [c["status"] for c in doc["videos"][0]["candidates"]] == ["needs_review", "needs_review"]
