"""The ``gemini`` analyzer against a loopback generateContent server: both passes, OCR and detections
shown in pass b, retries on invalid JSON / schema / finishReason / 429 / 5xx / slow answers, then the
range fails and the others continue; bad key; secrets never in errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from stageflow.errors import AnalysisFailed, BadInput, ServiceAuthError
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import NEEDS_CHECK, TimeRange, VideoEvidence
from stageflow.video.analysis.gemini import GeminiAnalyzer, GeminiConfig
from stageflow.video.store import VideoStore

from .conftest import GEMINI_KEY, VIDEO, write_frames
from .servers import Fault

GOOD = {
    "product_name": "라운드랩 자작나무 선크림",
    "brand": "라운드랩",
    "category_path": ["뷰티", "선케어"],
    "features": ["촉촉함"],
    "hook_sentence": "진짜 촉촉하고 너무 좋아요!",
    "summary": "매일 쓰는 선크림",
    "hashtags": ["#선크림"],
    "confidence": 0.9,
}


def analyzer(server, sleeps, key: str = GEMINI_KEY, **over: Any) -> GeminiAnalyzer:
    cfg = {"api_key": SecretStr(key), "base_url": server.url, "timeout_s": 2.0, "backoff_s": 0.01, **over}
    return GeminiAnalyzer(GeminiConfig(**cfg), sleep=sleeps)


@pytest.fixture
def ev() -> VideoEvidence:
    return VideoEvidence.from_part1(VIDEO)


def test_two_passes_and_visual_evidence_in_pass_b(gemini_server, sleeps, ev):
    gemini_server.ranges = [
        {"start": 4, "end": 14, "reason": "uses and recommends"},
        {"start": 40, "end": 99},
    ]
    gemini_server.candidate = GOOD
    g = analyzer(gemini_server, sleeps)
    ranges = g.find_ranges(ev.transcript)
    assert [(r.start, r.end) for r in ranges] == [(4.0, 14.0), (40.0, 45.0)]  # clamped to the transcript
    c = g.candidate(ranges[0], ev)
    assert c.product_name == "라운드랩 자작나무 선크림" and c.category_path == ("뷰티", "선케어")
    assert c.evidence.quotes[0].startswith("요즘 매일")  # quotes come from the transcript, not the model
    req = gemini_server.calls(":generateContent")[-1]
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    body = req.json()
    prompt = json.loads(body["contents"][0]["parts"][0]["text"])
    assert prompt["on_screen_text"][0]["text"] == "라운드랩 자작나무 선크림"
    assert prompt["objects"] == ["bottle"]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["maxOutputTokens"] == 2048  # thinking 1024 + answer 1024
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}
    assert "product_name" in body["generationConfig"]["responseSchema"]["properties"]
    assert req.headers["x-goog-api-key"] == GEMINI_KEY and "key=" not in req.query
    assert g.tokens_used == 300


def test_invalid_json_retried_then_valid(gemini_server, sleeps, ev):
    gemini_server.candidate = GOOD
    gemini_server.queue_text("{not json")
    gemini_server.queue_text(json.dumps({**GOOD, "confidence": 7}))  # schema: confidence <= 1
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    assert c.confidence == 0.9 and len(sleeps) == 2


def test_invalid_json_every_time_fails_that_range_and_the_rest_continue(gemini_server, sleeps, ev, store):
    gemini_server.ranges = [{"start": 4, "end": 14}, {"start": 40, "end": 45}]
    gemini_server.candidate = {**GOOD, "product_name": "Logitech MX Master 3S", "brand": "로지텍"}
    # pass a answers normally; pass b for the first range is invalid three times
    g = analyzer(gemini_server, sleeps, attempts=3)
    ranges = g.find_ranges(ev.transcript)
    for text in ("{oops", "[]", '{"product_name": 3}'):
        gemini_server.queue_text(text)

    class Fixed:
        def find_ranges(self, transcript):
            return ranges

        def candidate(self, rng, evidence):
            return g.candidate(rng, evidence)

    result = analyze_video(ev, analyzer=Fixed(), store=store)
    assert [(f.start, f.end) for f in result.failed] == [(4.0, 14.0)]
    assert "failed after 3 attempts" in result.failed[0].error
    assert [c.product_name for c in result.candidates] == ["Logitech MX Master 3S"]
    assert {r["status"] for r in VideoStore(store).candidates() if r["start"] == 4.0} == {"failed"}
    assert not g.breaker.is_open  # bad model output is not a service outage


def test_schema_violation_message(gemini_server, sleeps, ev):
    for _ in range(2):
        gemini_server.queue_text(json.dumps({"brand": None}))
    with pytest.raises(AnalysisFailed, match="violates the schema at confidence"):
        analyzer(gemini_server, sleeps, attempts=2).candidate(TimeRange(start=4, end=14), ev)


def test_finish_reason_other_than_stop_is_a_failure(gemini_server, sleeps, ev):
    gemini_server.queue_text(json.dumps(GOOD), finish="RECITATION")
    gemini_server.queue_text(json.dumps(GOOD), finish="SAFETY")
    with pytest.raises(AnalysisFailed, match="finishReason SAFETY"):
        analyzer(gemini_server, sleeps, attempts=2).candidate(TimeRange(start=4, end=14), ev)


def test_unclear_name_becomes_needs_check(gemini_server, sleeps, ev):
    gemini_server.candidate = {**GOOD, "product_name": None, "brand": None, "confidence": 0.9}
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    assert c.product_name == NEEDS_CHECK and c.brand is None and c.confidence == 0.5


def test_429_retry_after_and_5xx_burst(gemini_server, sleeps, ev):
    gemini_server.candidate = GOOD
    err = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    gemini_server.fail_next(Fault(429, err, {"Retry-After": "3"}), Fault(503, "unavailable"))
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    assert c.product_name == GOOD["product_name"]
    assert sleeps[0] == 3.0 and len(sleeps) == 2


def test_slow_answer_times_out_bounded(gemini_server, sleeps, ev):
    gemini_server.fail_next(*[Fault(200, "{}", delay_s=60) for _ in range(2)])
    with pytest.raises(AnalysisFailed, match="timed out after 0.2 s"):
        analyzer(gemini_server, sleeps, attempts=2, timeout_s=0.2).candidate(TimeRange(start=4, end=14), ev)
    assert len(gemini_server.wait_requests(2)) == 2


def test_bad_key_clear_error_without_secret(gemini_server, sleeps, ev):
    g = analyzer(gemini_server, sleeps, key="gm-wrong-key-zzz")
    with pytest.raises(ServiceAuthError) as info:
        g.find_ranges(ev.transcript)
    assert "GEMINI_API_KEY" in str(info.value) and "gm-wrong-key-zzz" not in str(info.value)
    assert len(gemini_server.requests) == 1


def test_no_key(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(BadInput, match="GEMINI_API_KEY"):
        GeminiAnalyzer(GeminiConfig())


def test_empty_transcript_makes_no_call(gemini_server, sleeps):
    assert analyzer(gemini_server, sleeps).find_ranges([]) == []
    assert gemini_server.requests == []


def test_prompt_budget_cuts_long_transcripts(gemini_server, sleeps):
    segs = [{"start": i, "end": i + 1, "text": "가" * 100} for i in range(100)]
    analyzer(gemini_server, sleeps, max_prompt_chars=500).find_ranges(segs)
    assert len(gemini_server.requests[0].json()["contents"][0]["parts"][0]["text"]) <= 500


# ------------------------------------------------------------------ visual evidence and token caps (item 6)
def test_pass_b_sends_a_few_of_the_ranges_kept_frames_as_jpeg_inline_parts(gemini_server, sleeps, tmp_path):
    import base64
    import io

    from PIL import Image

    times = [2.0, 5.0, 6.0, 7.0, 8.0, 12.0, 13.0, 30.0]
    ev = VideoEvidence.from_part1({**VIDEO, "frames": write_frames(tmp_path, times, size=(1600, 900))})
    gemini_server.candidate = GOOD
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    parts = gemini_server.calls(":generateContent")[-1].json()["contents"][0]["parts"]
    prompt = json.loads(parts[0]["text"])
    assert prompt["speech"][0].startswith("요즘 매일") and prompt["on_screen_text"]  # OCR + transcript
    images = [p["inlineData"] for p in parts if "inlineData" in p]
    assert len(images) == 3 and {i["mimeType"] for i in images} == {"image/jpeg"}
    decoded = [Image.open(io.BytesIO(base64.b64decode(i["data"]))) for i in images]
    assert all(img.format == "JPEG" and max(img.size) == 768 for img in decoded)  # downscaled
    labels = [p["text"] for p in parts[1:] if "text" in p]
    assert labels == ["frame at 2.0s", "frame at 7.0s", "frame at 13.0s"]  # spread, inside range +- 2 s
    assert 30.0 not in c.evidence.frame_times and 7.0 in c.evidence.frame_times


def test_unreadable_frame_is_skipped_not_fatal(gemini_server, sleeps, tmp_path):
    frames = write_frames(tmp_path, [6.0]) + [{"t": 7.0, "path": str(tmp_path / "gone.jpg")}]
    ev = VideoEvidence.from_part1({**VIDEO, "frames": frames})
    gemini_server.candidate = GOOD
    analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    parts = gemini_server.calls(":generateContent")[-1].json()["contents"][0]["parts"]
    assert len([p for p in parts if "inlineData" in p]) == 1


def test_thinking_budget_keeps_the_answer_inside_the_cap(gemini_server, sleeps, ev):
    """A model that would think 4000 tokens: without thinkingConfig the old 2048 cap ended in
    MAX_TOKENS (the server counts thinking against maxOutputTokens, as gemini-2.5 does)."""
    gemini_server.thinking_tokens = 4000
    gemini_server.candidate = GOOD
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    assert c.product_name == GOOD["product_name"]
    assert len(gemini_server.requests) == 1


def test_max_tokens_is_asked_again_once_with_a_larger_cap(gemini_server, sleeps, ev):
    gemini_server.candidate = GOOD
    gemini_server.queue_text('{"product_name": "라운드랩 자작', finish="MAX_TOKENS")
    c = analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev)
    assert c.product_name == GOOD["product_name"]
    caps = [r.json()["generationConfig"]["maxOutputTokens"] for r in gemini_server.requests]
    assert caps == [2048, 4096]


def test_empty_answer_is_asked_again_once(gemini_server, sleeps, ev):
    gemini_server.candidate = GOOD
    gemini_server.queue_text("")
    assert analyzer(gemini_server, sleeps).candidate(TimeRange(start=4, end=14), ev).confidence == 0.9
    assert len(gemini_server.requests) == 2


def test_max_tokens_twice_fails_that_range_only_and_names_the_cap(gemini_server, sleeps, ev, store):
    gemini_server.ranges = [{"start": 4, "end": 14}, {"start": 40, "end": 45}]
    gemini_server.candidate = GOOD
    g = analyzer(gemini_server, sleeps)
    ranges = g.find_ranges(ev.transcript)
    gemini_server.queue_text('{"product_name": "라', finish="MAX_TOKENS")
    gemini_server.queue_text("", finish="MAX_TOKENS")

    class Fixed:
        def find_ranges(self, transcript):
            return ranges

        def candidate(self, rng, evidence):
            return g.candidate(rng, evidence)

    result = analyze_video(ev, analyzer=Fixed(), store=store)
    assert [(f.start, f.end) for f in result.failed] == [(4.0, 14.0)]
    err = result.failed[0].error
    assert "MAX_TOKENS" in err and "maxOutputTokens 2048 and again at 4096" in err
    assert len(gemini_server.requests) == 1 + 2 + 1  # pass a, the range twice (no third try), range 2
    assert [c.start for c in result.candidates] == [40.0]


def test_engine_hands_the_kept_frames_to_gemini(gemini_server, sleeps, ev, tmp_path):
    gemini_server.ranges = [{"start": 4, "end": 14}]
    gemini_server.candidate = GOOD
    frames = [(f["t"], f["path"]) for f in write_frames(tmp_path, [5.0, 9.0, 50.0])]
    result = analyze_video(ev, analyzer=analyzer(gemini_server, sleeps), frames=frames)
    assert [c.product_name for c in result.candidates][:1] == [GOOD["product_name"]]
    pass_b = [r.json() for r in gemini_server.requests if "product_name" in r.body.decode()][0]
    parts = pass_b["contents"][0]["parts"]
    assert len([p for p in parts if "inlineData" in p]) == 2  # 5 s and 9 s; 50 s is outside the range


def test_pipeline_analyse_step_hands_the_jobs_kept_frames_to_gemini(gemini_server, sleeps, tmp_path):
    """The pipeline's *analyse* step (CLI and flow alike) passes the decoded job's kept frames on."""
    from pathlib import Path

    from stageflow.video import pipeline
    from stageflow.video.decode import MediaInfo
    from stageflow.video.pipeline.candidates import Analysis
    from stageflow.video.pipeline.records import DecodedJob, KeptFrame, VideoRecord
    from stageflow.video.settings import VideoConfig

    gemini_server.ranges = [{"start": 4, "end": 14}]
    gemini_server.candidate = GOOD
    kept = [
        KeptFrame(t=f["t"], index=n, sharpness=1.0, file=Path(f["path"]).name)
        for n, f in enumerate(write_frames(tmp_path, [5.0, 9.0, 50.0]))
    ]
    info = MediaInfo(path="v.mp4", duration_s=70.0, has_video=True, has_audio=True, width=640, height=360)
    job = DecodedJob(
        video_id="vid-001", source="folder", title="t", path="v.mp4", workdir=str(tmp_path), info=info,
        frames=kept,
    )  # fmt: skip
    analysis = Analysis(analyzer(gemini_server, sleeps), None, None)
    config = VideoConfig.model_validate({"channel": {"subscribers": 1000}})
    done = pipeline.analyse(VideoRecord.model_validate(VIDEO), job, None, config, analysis)
    assert done.record.error is None
    pass_b = [r.json() for r in gemini_server.requests if "product_name" in r.body.decode()][0]
    assert len([p for p in pass_b["contents"][0]["parts"] if "inlineData" in p]) == 2  # 5 s and 9 s
