"""One dedicated test per finding of issue 18 (the numbers are the issue's "What was found"): each
asserts the behaviour the finding said was wrong, so it fails on the code the finding described.
Sheets (finding 9) is in test_gsheets.py, Gemini (finding 8) in test_gemini.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from pydantic import SecretStr

from stageflow.commerce.coupang import CoupangClient, CoupangConfig, QuotaExceeded
from stageflow.commerce.matching import find_match
from stageflow.errors import BudgetExhausted, RateLimited
from stageflow.video.analysis.brands import BRANDS
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import NEEDS_CHECK, InfluencerStats, VideoEvidence
from stageflow.video.analysis.naming import Brands, names_agree
from stageflow.video.analysis.ppl import PplPatterns, candidate_ppl
from stageflow.video.analysis.routing import Status
from stageflow.video.analysis.rules import RulesAnalyzer
from stageflow.video.analysis.scoring import endorsement_of, score_quotes, sentiment_of
from stageflow.video.store import VideoStore

from .conftest import ACCESS_KEY, CATALOG, CHANNEL, SECRET_KEY, SLACK_TOKEN, VIDEO
from .servers import CoupangServer, SlackServer

BOX = [40, 600, 680, 660]


def video(vid: str, speech: list[tuple[float, float, str]], ocr: list[tuple[float, str]] = (), **kw: Any):
    """A part-1 record from (start, end, text) segments and (t, text) on-screen texts."""
    return VideoEvidence.from_part1(
        {
            "id": vid,
            "title": kw.get("title", "일상 영상"),
            "transcript": [{"start": a, "end": b, "text": t} for a, b, t in speech],
            "ocr": [{"t": t, "text": x, "confidence": 0.93, "box": BOX} for t, x in ocr],
        },
        channel=kw.get("channel", CHANNEL),
    )


def candidates(ev: VideoEvidence, **kw: Any) -> list[Any]:
    return analyze_video(ev, analyzer=RulesAnalyzer(), **kw).candidates


def coupang(server: CoupangServer, **over: Any) -> CoupangClient:
    store = over.pop("store", None)
    cfg: dict[str, Any] = {
        "access_key": SecretStr(ACCESS_KEY),
        "secret_key": SecretStr(SECRET_KEY),
        "base_url": server.url,
        "backoff_s": 0.01,
        "search_per_hour": 100,
        "use_store": False,
        "alerts": False,
        **over,
    }
    return CoupangClient(CoupangConfig(**cfg), store=store, sleep=lambda s: None)


# ------------------------------------------------------------------------------- 1. scoring and rescue
GUSH = "진짜 매일 써요 정말 최고 대박 좋아요! 완전 추천해요! 너무 예뻐요!"
BIG = InfluencerStats(subscribers=2_000_000, engagement_rate=0.08, consistency=0.8, authenticity=0.8)


def test_1_a_gushing_line_on_a_big_channel_reaches_review_score():
    score, band = score_quotes([GUSH], BIG)
    assert score >= 60 and band in ("medium", "high")  # was 58 < 60


def test_1_chucheon_counts_for_sentiment_and_endorsement():
    plain, rec = "이 선크림 써요", "이 선크림 추천해요"
    assert sentiment_of([rec]).positive > sentiment_of([plain]).positive
    assert endorsement_of([rec]).value > endorsement_of([plain]).value
    assert score_quotes([rec], BIG)[0] > score_quotes([plain], BIG)[0]


def test_1_one_exclamation_mark_is_counted_once():
    calm, loud, louder = sentiment_of(["좋아요"]), sentiment_of(["좋아요!"]), sentiment_of(["좋아요!!!"])
    assert loud.exclamation == louder.exclamation == 0.5  # one run of "!" = one cue, 2 runs = 1.0
    assert (loud.positive, loud.emphasis, loud.emotion) == (calm.positive, calm.emphasis, calm.emotion)
    assert sentiment_of(["좋아요! 최고!"]).exclamation == 1.0


def test_1_a_reviewer_rescues_a_low_scored_candidate_with_history(store, coupang_server):
    ev = video("low", [(0, 5, "라운드랩 자작나무 선크림 써봤어요")], channel={})
    (cand,) = candidates(ev, store=store, commerce=coupang(coupang_server))
    assert cand.commerce is not None
    assert cand.status == Status.LOW_SCORE_FILTERED
    cid = VideoStore(store).candidates(video_id="low")[0]["id"]
    VideoStore(store).set_candidate_status(
        cid, Status.NEEDS_REVIEW, actor="reviewer:kim", reason="good clip anyway"
    )
    assert VideoStore(store).candidate_status(cid) == Status.NEEDS_REVIEW
    last = VideoStore(store).status_history(cid)[-1]
    assert (last["old_status"], last["new_status"], last["actor"]) == (
        "low_score_filtered",
        "needs_review",
        "reviewer:kim",
    )


# ------------------------------------------------------------------------------- 2. spoken names, OCR error
def test_2_products_are_named_from_speech_alone():
    ko = video("ko", [(0, 6, "요즘 매일 쓰는 라운드랩 자작나무 수분 선크림 진짜 좋아요 강추")])
    en = video("en", [(0, 6, "I use the Logitech MX Master 3S every day, totally recommend it")])
    (k,) = candidates(ko)
    (e,) = candidates(en)
    assert (
        k.product_name != NEEDS_CHECK and "자작나무 수분 선크림" in k.product_name and k.brand == "라운드랩"
    )
    assert "MX Master 3S" in e.product_name and e.brand == "로지텍"


def test_2_one_wrong_ocr_syllable_still_fuses_with_the_spoken_name():
    assert names_agree("룸앤 쥬시 래스팅 틴트", "롬앤 쥬시 래스팅 틴트")
    ev = video(
        "tint",
        [(0, 6, "롬앤 쥬시 래스팅 틴트 매일 발라요"), (6, 10, "발색 진짜 예뻐요 강추!")],
        [(2, "룸앤 쥬시 래스팅 틴트"), (4, "룸앤 쥬시 래스팅 틴트"), (8, "룸앤 쥬시 래스팅 틴트")],
    )
    (c,) = candidates(ev)  # one candidate: caption and speech fused
    assert c.brand == "롬앤" and "룸앤" not in c.product_name and "쥬시 래스팅 틴트" in c.product_name


# ------------------------------------------------------------------------------- 3. unlisted brand
def test_3_an_unlisted_brand_on_screen_with_a_recommendation_is_a_candidate():
    assert "모이스트랩" not in BRANDS and not any("모이스트랩" in v for vs in BRANDS.values() for v in vs)
    ev = video(
        "unlisted",
        [(0, 5, "요즘 제일 자주 바르는 크림이에요"), (5, 10, "진짜 순하고 촉촉해요 완전 추천해요!")],
        [
            (1, "모이스트랩 시카 리페어 크림"),
            (3, "모이스트랩 시카 리페어 크림"),
            (6, "모이스트랩 시카 리페어 크림"),
        ],
    )
    (c,) = candidates(ev)
    assert "시카 리페어 크림" in c.product_name


# ------------------------------------------------------------------------------- 4. mix-ups and junk
def test_4_captions_ten_seconds_apart_stay_two_products():
    ev = video(
        "two",
        [],
        [(2, "토리든 다이브인 세럼"), (4, "토리든 다이브인 세럼"), (14, "메디힐 마데카소사이드 패드"),
         (16, "메디힐 마데카소사이드 패드")],
    )  # fmt: skip
    cands = candidates(ev)
    assert len(cands) == 2
    (a, b) = sorted(cands, key=lambda c: c.start)
    assert "다이브인 세럼" in a.product_name and a.brand == "토리든" and a.end <= 4
    assert "마데카소사이드 패드" in b.product_name and b.brand == "메디힐" and b.start >= 14


def test_4_brand_by_proximity_not_lexicon_order():
    # 라운드랩 comes before 롬앤 in the brand list and is said first, but not about the tint
    ev = video(
        "near",
        [
            (0, 5, "라운드랩 선크림은 지난번에 소개했고요"),
            (8, 14, "오늘은 롬앤 쥬시 래스팅 틴트 매일 발라요 강추!"),
        ],
        [(10, "쥬시 래스팅 틴트"), (12, "쥬시 래스팅 틴트")],
    )
    tints = [c for c in candidates(ev) if "틴트" in c.product_name]
    assert tints and all(c.brand == "롬앤" for c in tints)


def test_4_pineapple_is_not_apple():
    assert Brands(BRANDS).find("파인애플 주스") == []
    ev = video(
        "pine", [(0, 6, "아침마다 파인애플 주스 마셔요 진짜 맛있어요 추천해요")], [(2, "파인애플 주스")]
    )
    assert all(c.brand != "애플" for c in candidates(ev))


def test_4_junk_ocr_is_never_a_product_nor_a_coupang_search(coupang_server):
    junk = "—__ _ he ."
    alone = video("junk", [], [(t, junk) for t in (1, 2, 3, 4, 5)])
    client = coupang(coupang_server)
    assert candidates(alone, commerce=client) == []
    # junk on screen while the speaker recommends something unnamed: "he" is in "the", but the
    # candidate stays unnamed and nothing is searched
    said = video(
        "junk2",
        [(0, 6, "I use the one every day, I really recommend it!")],
        [(t, junk) for t in (1, 2, 3, 4, 5)],
    )
    for cand in candidates(said, commerce=client):
        assert cand.product_name == NEEDS_CHECK and cand.commerce is None
    assert coupang_server.calls("search") == []


def test_4_link_in_description_is_no_candidate(coupang_server):
    ev = video(
        "cta",
        [(0, 4, "구매 링크는 설명란에 있어요"), (4, 8, "구독 좋아요 알림 설정 부탁드려요")],
        [
            (1, "구매 링크는 설명란 ↓"),
            (3, "구매 링크는 설명란 ↓"),
            (5, "구독 & 좋아요"),
            (7, "구독 & 좋아요"),
        ],
    )
    assert candidates(ev, commerce=coupang(coupang_server)) == []
    assert coupang_server.calls("search") == []


# ------------------------------------------------------------------------------- 5. re-routing
def test_5_reanalysis_after_coupang_is_configured_reroutes_with_history(store, coupang_server):
    ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
    first = {c.start: c.status for c in candidates(ev, store=store)}
    assert set(first.values()) <= {"no_commerce_match", "low_score_filtered"}
    second = analyze_video(ev, analyzer=RulesAnalyzer(), store=store, commerce=coupang(coupang_server))
    sun = next(c for c in second.candidates if "선크림" in c.product_name)
    assert first[sun.start] == "no_commerce_match" and sun.commerce is not None
    assert sun.status == "needs_review"
    cid = next(r["id"] for r in VideoStore(store).candidates(video_id=ev.video_id) if r["start"] == sun.start)
    assert VideoStore(store).candidate_status(cid) == "needs_review"
    steps = [(h["old_status"], h["new_status"]) for h in VideoStore(store).status_history(cid)]
    assert steps[-3:] == [
        ("no_commerce_match", "processing"),
        ("processing", "analysis_complete"),
        ("analysis_complete", "needs_review"),
    ]
    assert "re-analysis" in VideoStore(store).status_history(cid)[-1]["reason"]


def test_5_a_cli_run_then_the_flow_with_coupang_reroutes(store, coupang_server):
    """The CLI (actor "engine") first, then the scheduled flow (actor "flow") once Coupang is set up:
    both are the analysis, not a person, so the flow re-routes what the CLI routed."""
    ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
    analyze_video(ev, analyzer=RulesAnalyzer(), store=store, actor="engine")
    again = analyze_video(
        ev, analyzer=RulesAnalyzer(), store=store, commerce=coupang(coupang_server), actor="flow"
    )
    sun = next(c for c in again.candidates if "선크림" in c.product_name)
    assert sun.status == "needs_review"
    cid = next(r["id"] for r in VideoStore(store).candidates(video_id=ev.video_id) if r["start"] == sun.start)
    assert VideoStore(store).status_history(cid)[-1]["actor"] == "flow"


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_5_a_human_decision_is_never_overridden(store, coupang_server, decision):
    ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
    candidates(ev, store=store)
    row = next(r for r in VideoStore(store).candidates(video_id=ev.video_id) if "선크림" in r["product_name"])
    cid = row["id"]
    VideoStore(store).set_candidate_status(
        cid, "needs_review", actor="reviewer:lee", reason="link added by hand"
    )
    VideoStore(store).set_candidate_status(cid, decision, actor="reviewer:lee")
    before = len(VideoStore(store).status_history(cid))
    again = analyze_video(ev, analyzer=RulesAnalyzer(), store=store, commerce=coupang(coupang_server))
    assert VideoStore(store).candidate_status(cid) == decision
    assert len(VideoStore(store).status_history(cid)) == before
    assert next(c for c in again.candidates if c.start == row["start"]).status == decision


# ------------------------------------------------------------------------------- 6. PPL per candidate
def test_6_ppl_is_per_candidate():
    ev = video(
        "ppl",
        [
            (0, 6, "토리든 다이브인 세럼은 협찬받은 제품이에요 매일 써요"),
            (6, 10, "진짜 촉촉하고 좋아요"),
            (40, 46, "그리고 라운드랩 자작나무 선크림은 내돈내산 인생템이에요 강추!"),
        ],
    )
    by = {c.brand: c for c in candidates(ev)}
    assert by["토리든"].ppl_probability > by["라운드랩"].ppl_probability
    assert by["토리든"].evidence.ppl and not by["라운드랩"].evidence.ppl


def test_6_spaced_ocr_disclosure_is_found():
    patterns = PplPatterns.load()
    spaced, _ = candidate_ppl(video_wide={}, speech=[], ocr=["유 료 광고 포함"], patterns=patterns)
    tight, _ = candidate_ppl(video_wide={}, speech=[], ocr=["유료광고 포함"], patterns=patterns)
    none, _ = candidate_ppl(video_wide={}, speech=[], ocr=["자작나무 선크림"], patterns=patterns)
    assert spaced == tight > none


# ------------------------------------------------------------------------------- 7. Coupang
_PROC = textwrap.dedent(
    """
    import json, sys
    from pydantic import SecretStr
    from stageflow.commerce.coupang import CoupangClient, CoupangConfig
    from stageflow.errors import RateLimited
    from stageflow.store import open_store
    url, db, ak, sk, n = sys.argv[1:6]
    store = open_store(db)
    cfg = CoupangConfig(access_key=SecretStr(ak), secret_key=SecretStr(sk), base_url=url,
                        search_per_hour=3, rate_wait_s=0, cache_ttl_s=0, alerts=False, use_store=True)
    c = CoupangClient(cfg, store=store)
    out = []
    for i in range(int(n)):
        try:
            c.search(f"{sys.argv[6]} {i}", 1)
            out.append("ok")
        except RateLimited:
            out.append("limited")
    print(json.dumps(out))
    """
)


def test_7_token_bucket_is_shared_by_two_real_processes(tmp_path, coupang_server):
    db = tmp_path / "shared.db"
    from stageflow.store import open_store

    open_store(db).close()  # migrated once, so both processes start from the same schema
    env = {**os.environ, "STAGEFLOW_HOME": str(tmp_path / "home")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROC, coupang_server.url, str(db), ACCESS_KEY, SECRET_KEY, "3", f"p{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs += json.loads(out)
    assert outs.count("ok") == 3 and outs.count("limited") == 3  # 3 per hour across both processes
    assert len(coupang_server.calls("search")) == 3


def test_7_quota_403_is_reported_as_quota_with_the_reset_time(store):
    with CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG, search_quota=1) as server:
        now = 1_800_000_000.0
        cfg = {
            "access_key": SecretStr(ACCESS_KEY),
            "secret_key": SecretStr(SECRET_KEY),
            "base_url": server.url,
            "use_store": True,
            "alerts": False,
            "backoff_s": 0.01,
        }
        c = CoupangClient(CoupangConfig(**cfg), store=store, wall_clock=lambda: now, sleep=lambda s: None)
        c.search("선크림", 1)
        with pytest.raises(QuotaExceeded) as info:
            c.search("마우스", 1)
        msg = str(info.value)
        assert "quota exceeded" in msg and "resets at 2027-01-15T09:00:00Z" in msg
        assert "key" not in msg.lower() and SECRET_KEY not in msg
        assert info.value.reset_at == 1_800_003_600.0  # the end of the hour's search window
        asked = len(server.calls("search"))
        # a fresh client (another run) on the same store does not spend a call before the reset
        c2 = CoupangClient(
            CoupangConfig(**cfg), store=store, wall_clock=lambda: now + 5, sleep=lambda s: None
        )
        with pytest.raises(RateLimited):
            c2.search("키보드", 1)
        assert len(server.calls("search")) == asked


def test_7_budget_alerts_reach_the_configured_notifier_once_per_threshold(tmp_path, monkeypatch):
    """The run hands the client its [notify] notifier through the preflight context."""
    from stageflow.config import load_config
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.video.pipeline.candidates import commerce_context

    with SlackServer(SLACK_TOKEN) as slack, CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as server:
        (tmp_path / "stageflow.toml").write_text(
            f'[notify]\nbackend = "slack"\noptions = {{ token = "{SLACK_TOKEN}", channel = "C123", '
            f'base_url = "{slack.url}/api/" }}\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
        options = {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "base_url": server.url,
            "search_per_hour": 100,
            "monthly_budget": 20,
            "backoff_s": 0.01,
        }
        notify = load_config(tmp_path / "stageflow.toml").notify
        context = commerce_context(get_plugin_manager(), notify.backend, notify.options)
        c = get_plugin_manager().build("commerce", "coupang", options)
        c.preflight(context)
        for i in range(19):
            c.search(f"kw{i}", 1)
        with pytest.raises(BudgetExhausted):
            c.search("one more", 1)
        titles = [p["text"] for p in slack.posted]
        assert len(titles) == 4
        for pct in (70, 80, 90, 95):
            assert sum(f"{pct}% of the monthly API budget" in t for t in titles) == 1
        # another run this month (a new client, same store): no alert is sent twice
        c2 = get_plugin_manager().build("commerce", "coupang", options)
        c2.preflight(context)
        with pytest.raises(BudgetExhausted):
            c2.search("again", 1)
        assert len(slack.posted) == 4
        assert SECRET_KEY not in json.dumps(slack.posted, ensure_ascii=False)


def test_7_a_partner_product_url_is_not_deeplinked_again():
    partner = "https://link.coupang.com/re/AFFSDP?lptag=AF1&pageKey=1"
    catalog = [{**CATALOG[0], "productUrl": partner}]
    with CoupangServer(ACCESS_KEY, SECRET_KEY, catalog) as server:
        m = find_match(coupang(server), "자작나무 수분 선크림", "라운드랩")
        assert m is not None and m.url == partner
        assert server.calls("deeplink") == []


def test_7_a_sibling_product_of_the_same_brand_is_not_a_match():
    sibling = {"productId": 9, "productName": "라운드랩 1025 독도 로션 200ml", "productPrice": 17900,
               "productUrl": "https://www.coupang.com/vp/products/9", "categoryName": "로션"}  # fmt: skip
    with CoupangServer(ACCESS_KEY, SECRET_KEY, [sibling]) as server:
        assert find_match(coupang(server), "1025 독도 토너", "라운드랩") is None
        assert server.calls("search")  # it did look


def test_7_an_english_name_is_matched_through_a_korean_query():
    airpods = {"productId": 11, "productName": "애플 에어팟 프로 2세대 USB-C", "productPrice": 329000,
               "productUrl": "https://www.coupang.com/vp/products/11", "categoryName": "이어폰"}  # fmt: skip
    with CoupangServer(ACCESS_KEY, SECRET_KEY, [airpods]) as server:
        m = find_match(coupang(server), "AirPods Pro 2", "애플")
        assert m is not None and m.product_id == "11"
        first = server.calls("search")[0].query
        from urllib.parse import parse_qs

        assert parse_qs(first)["keyword"][0] == "애플 에어팟 프로 2"


def test_7_searches_per_candidate_cold_and_warm(store):
    """<= 2 searches per candidate on a cold store, 0 on a warm one."""
    with CoupangServer(ACCESS_KEY, SECRET_KEY, CATALOG) as server:
        c = coupang(server, use_store=True, store=store)
        ev = VideoEvidence.from_part1(VIDEO, channel=CHANNEL)
        cold = analyze_video(ev, analyzer=RulesAnalyzer(), store=store, commerce=c)
        n = len(server.calls("search"))
        assert n <= 2 * len(cold.candidates)
        analyze_video(ev, analyzer=RulesAnalyzer(), store=store, commerce=c)
        assert n >= 1 and len(server.calls("search")) == n  # warm: stored matches, cached searches


# ------------------------------------------------------------------------------- found on the held-out set
def test_heldout_cannot_recommend_enough_is_praise_not_negation():
    assert sentiment_of(["I can't recommend it enough."]).negative == 0.0
    assert sentiment_of(["I can't recommend it enough."]).positive > 0
    assert sentiment_of(["I can't recommend it, it broke."]).negative > 0  # a real negation still is


def test_heldout_the_videos_title_on_screen_is_not_a_product():
    ev = video(
        "title",
        [(0, 5, "So I grabbed my Kindle but the battery was dead, typical.")],
        [(1, "Sunday reset"), (3, "Sunday reset")],
        title="Sunday reset vlog",
    )
    assert all("Sunday" not in c.product_name for c in candidates(ev))
    # a product named in the title is still a product
    named = video("titled", [], [(1, "라운드랩 자작나무 선크림"), (3, "라운드랩 자작나무 선크림")],
                  title="라운드랩 자작나무 선크림 리뷰")  # fmt: skip
    assert [c.brand for c in candidates(named)] == ["라운드랩"]


def test_heldout_an_unlisted_brand_is_named_by_the_matched_title():
    from stageflow.commerce.matching import brand_from_title

    assert brand_from_title("마몽드 로즈워터 토너", "마몽드 로즈워터 토너 250ml") == "마몽드"
    assert brand_from_title("3CE 벨벳 립 틴트", "3CE 벨벳 립 틴트 4g") == "3CE"
    assert brand_from_title("자작나무 수분 선크림", "라운드랩 자작나무 수분 선크림 50ml") is None
    assert brand_from_title("1025 독도 토너", "1025 독도 토너") is None  # a number is no brand
    assert brand_from_title("선크림", "선크림 50ml") is None
    mamonde = {"productId": 6, "productName": "마몽드 로즈워터 토너 250ml", "productPrice": 15000,
               "productUrl": "https://www.coupang.com/vp/products/6", "categoryName": "토너"}  # fmt: skip
    with CoupangServer(ACCESS_KEY, SECRET_KEY, [mamonde]) as server:
        ev = video("mamonde", [(0, 6, "마몽드 로즈워터 토너 매일 써요 진짜 순해요")],
                   [(2, "마몽드 로즈워터 토너"), (4, "마몽드 로즈워터 토너")])  # fmt: skip
        (c,) = candidates(ev, commerce=coupang(server))
        assert c.commerce is not None and c.brand == "마몽드"
