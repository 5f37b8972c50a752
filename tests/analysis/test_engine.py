"""analyze_video end to end: rules analyzer + the real Coupang client against the loopback server
+ the real store. Routing, status history, idempotent re-runs, failing ranges, empty transcript."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from stageflow.commerce.coupang import CoupangClient, CoupangConfig
from stageflow.errors import AnalysisFailed
from stageflow.video.analysis.engine import analyze_video, summary_message
from stageflow.video.analysis.evidence import VideoEvidence
from stageflow.video.analysis.rules import RulesAnalyzer
from stageflow.video.store import VideoStore

from .conftest import ACCESS_KEY, CHANNEL, SECRET_KEY, VIDEO


def coupang(server, store, sleeps, **over: Any) -> CoupangClient:
    cfg = CoupangConfig(
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        base_url=server.url,
        search_per_hour=100,
        timeout_s=2,
        backoff_s=0.01,
        **over,
    )
    return CoupangClient(cfg, store=store, sleep=sleeps)


def evidence(**over: Any) -> VideoEvidence:
    return VideoEvidence.from_part1({**VIDEO, **over}, channel=CHANNEL)


def test_analyze_video_full_pipeline(store, coupang_server, sleeps):
    clips = []

    def clipper(start: float, end: float):
        clips.append((start, end))
        return f"/clips/{start:g}.mp4", f"/clips/{start:g}.jpg"

    result = analyze_video(
        evidence(),
        analyzer=RulesAnalyzer(),
        commerce=coupang(coupang_server, store, sleeps),
        store=store,
        clipper=clipper,
    )
    assert result.failed == [] and result.errors == []
    assert result.ppl_probability == 0.0
    by_name = {c.product_name: c for c in result.candidates}
    assert set(by_name) == {"라운드랩 자작나무 선크림", "Logitech MX Master 3S", "다이슨 에어랩"}
    sun = by_name["라운드랩 자작나무 선크림"]
    assert sun.commerce is not None and sun.commerce.product_id == "1"
    assert sun.commerce.url.startswith("https://link.coupang.com/a/")
    assert sun.commerce.similarity >= 0.8
    mouse = by_name["Logitech MX Master 3S"]
    assert mouse.commerce is not None and mouse.commerce.product_id == "2"
    assert by_name["다이슨 에어랩"].commerce is None
    assert by_name["다이슨 에어랩"].status == "no_commerce_match"
    assert sun.clip == "/clips/4.mp4" and sun.thumbnail == "/clips/4.jpg"
    assert (59.0, 61.0) in clips  # the on-screen-only point range gets a +-1 s clip
    # every candidate got a score, band and a routed status consistent with the rules
    for c in result.candidates:
        assert c.score is not None and c.score_band is not None
        assert c.status in {"needs_review", "low_score_filtered", "no_commerce_match"}
        if c.commerce is not None:
            assert c.status == ("needs_review" if c.score >= 60 else "low_score_filtered")
    # pinned (issue 18, finding 1: a genuine recommendation reaches review): S = .8 (praise, "!", emphasis
    # saturated), E = .75 (매일 쓰고 있는 strong usage, 보여드릴게요, 촉촉, 강추 as the speaker's verdict)
    assert sun.score == 77 and sun.score_band == "medium" and sun.status == "needs_review"
    # stored, with history
    rows = VideoStore(store).candidates("vid-001")
    assert len(rows) == 3
    hist = VideoStore(store).status_history(rows[0]["id"])
    assert [h["new_status"] for h in hist][:3] == ["pending", "processing", "analysis_complete"]
    assert VideoStore(store).videos()[0]["video_id"] == "vid-001"
    out = result.to_output()
    assert set(out[0]) >= {
        "id",
        "product_name",
        "brand",
        "category_path",
        "start",
        "end",
        "evidence",
        "score",
        "score_band",
        "ppl_probability",
        "status",
        "commerce",
        "clip",
        "thumbnail",
    }


def test_same_video_twice_no_duplicates_and_reviews_kept(store, coupang_server, sleeps):
    client = coupang(coupang_server, store, sleeps)
    first = analyze_video(evidence(), analyzer=RulesAnalyzer(), commerce=client, store=store)
    cid = first.candidates[-1].id
    VideoStore(store).set_candidate_status(cid, "needs_review", actor="reviewer", reason="link added by hand")
    calls_before = len(coupang_server.requests)
    second = analyze_video(evidence(), analyzer=RulesAnalyzer(), commerce=client, store=store)
    assert len(VideoStore(store).candidates()) == 3
    assert [c.id for c in second.candidates] == [c.id for c in first.candidates]
    assert {c.id: c.status for c in second.candidates}[cid] == "needs_review"
    assert len(VideoStore(store).status_history(cid)) == 5  # not re-routed by the second run
    # searches came from the 1 h cache and deeplinks from the link cache: no API call at all
    assert coupang_server.requests[calls_before:] == []


def test_ppl_routes_before_commerce(store, coupang_server, sleeps):
    result = analyze_video(
        evidence(title="[유료광고] 여름 루틴, 할인코드 SUMMER"),
        analyzer=RulesAnalyzer(),
        commerce=coupang(coupang_server, store, sleeps),
        store=store,
    )
    assert result.ppl_probability == 0.85
    assert {c.status for c in result.candidates} == {"high_ppl_risk"}


def test_empty_transcript_only_on_screen_candidates(store):
    result = analyze_video(evidence(transcript=[]), analyzer=RulesAnalyzer(), store=store)
    names = [(c.product_name, c.start, c.end) for c in result.candidates]
    assert names == [
        ("라운드랩 자작나무 선크림", 6.0, 12.0),
        ("Logitech MX Master 3S", 42.0, 42.0),
        ("다이슨 에어랩", 60.0, 60.0),
    ]
    assert all(c.confidence <= 0.35 and c.evidence.quotes == () for c in result.candidates)
    assert {c.status for c in result.candidates} == {"no_commerce_match"}  # no commerce given
    nothing = analyze_video(evidence(transcript=[], ocr=[]), analyzer=RulesAnalyzer(), store=store)
    assert nothing.candidates == [] and nothing.failed == []


class FlakyAnalyzer(RulesAnalyzer):
    def candidate(self, time_range, evidence):
        if time_range.start == 4:
            raise AnalysisFailed("model answered invalid JSON 3 times")
        return super().candidate(time_range, evidence)


def test_failed_range_is_recorded_and_the_rest_continue(store):
    result = analyze_video(evidence(), analyzer=FlakyAnalyzer(), store=store)
    assert [(f.start, f.end) for f in result.failed] == [(4.0, 14.0)]
    assert "invalid JSON" in result.failed[0].error
    assert len(result.candidates) == 2
    statuses = {
        r["start_ms"] if "start_ms" in r else r["start"]: r["status"] for r in VideoStore(store).candidates()
    }
    assert statuses[4.0] == "failed"
    # a re-run retries the failed range (failed -> processing is allowed)
    again = analyze_video(evidence(), analyzer=RulesAnalyzer(), store=store)
    assert again.failed == [] and len(VideoStore(store).candidates()) == 3


def test_summary_message_lists_top_candidates_and_errors(store):
    result = analyze_video(evidence(), analyzer=FlakyAnalyzer(), store=store)
    msg = summary_message("run-42", [result])
    assert msg.fields["run"] == "run-42" and msg.fields["failed_ranges"] == "1"
    assert msg.level == "warning" and "invalid JSON" in msg.text
    assert msg.text.startswith("1. ")


@pytest.mark.parametrize("bad", [{"id": "x", "transcript": [{"start": 5, "end": 1, "text": "a"}]}])
def test_bad_evidence_is_a_clear_error(bad):
    ev = VideoEvidence.from_part1(bad)  # segments are taken as given; ranges validate order
    assert ev.transcript[0].start == 5
