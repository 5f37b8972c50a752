"""Scoring pinned to the issue's formula, PPL patterns, routing, and the status machine enforced by
the store with status_history."""

from __future__ import annotations

import pytest

from stageflow.errors import ConfigError, IllegalTransition
from stageflow.video.analysis.evidence import InfluencerStats
from stageflow.video.analysis.ppl import PplPatterns, ppl_probability
from stageflow.video.analysis.routing import Status, check_transition, route
from stageflow.video.analysis.scoring import (
    Endorsement,
    Influence,
    Sentiment,
    attractiveness,
    band,
    endorsement_of,
    influence_of,
    score_quotes,
    sentiment_of,
)
from stageflow.video.store import VideoStore


def test_attractiveness_formula_pinned():
    s = Sentiment(positive=1, exclamation=0.5, emphasis=0, emotion=0, negative=1)
    e = Endorsement(usage=1, demonstration=0, effect=0.5, experience=0, possession=1)
    i = Influence(subscribers=0.5, engagement=0.2, consistency=0, authenticity=1)
    assert s.value == pytest.approx(0.35 + 0.125 - 0.15)
    assert e.value == pytest.approx(0.30 + 0.10 + 0.10)
    assert i.value == pytest.approx(0.125 + 0.07 + 0.15)
    # (0.5*0.325 + 0.35*0.5 + 0.15*0.345) * 100 = 38.925
    assert attractiveness(s, e, i) == 39
    full = attractiveness(Sentiment(1, 1, 1, 1, 0), Endorsement(1, 1, 1, 1, 1), Influence(1, 1, 1, 1))
    assert full == 100
    assert attractiveness(Sentiment(), Endorsement(), Influence()) == 0
    # sentiment clamps at 0 when only negative
    assert Sentiment(negative=1).value == 0.0
    # each weight on its own
    assert attractiveness(Sentiment(positive=1), Endorsement(), Influence()) == round(0.5 * 0.35 * 100)
    assert attractiveness(Sentiment(), Endorsement(usage=1), Influence()) == round(0.35 * 0.30 * 100)
    assert attractiveness(Sentiment(), Endorsement(), Influence(engagement=1)) == round(0.15 * 0.35 * 100)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100, "high"),
        (80, "high"),
        (79, "medium"),
        (60, "medium"),
        (59, "low"),
        (40, "low"),
        (39, "very_low"),
        (0, "very_low"),
    ],
)
def test_bands(score, expected):
    assert band(score) == expected


def test_subscores_from_text_and_channel():
    s = sentiment_of(["진짜 너무 좋아요!!!"])  # one run of "!" is one exclamation (finding 1)
    assert (s.positive, s.exclamation, s.emphasis, s.emotion, s.negative) == pytest.approx(
        (2 / 3, 0.5, 1.0, 0, 0)  # one plain praise cue = 2/3, one "!" run = 1/2, two emphasis = 1
    )
    # "매일 쓰" is a strong usage cue (weight 2) on top of "쓰고 있": usage saturates
    e = endorsement_of(["매일 쓰고 있는 선크림 보여드릴게요, 촉촉해요", "I bought it"])
    assert (e.usage, e.demonstration, e.effect, e.experience, e.possession) == pytest.approx(
        (1.0, 2 / 3, 2 / 3, 0.0, 2 / 3)
    )
    i = influence_of(
        InfluencerStats(subscribers=10_000_000, engagement_rate=0.2, consistency=0.5, authenticity=2)
    )
    assert (i.subscribers, i.engagement, i.consistency, i.authenticity) == (1.0, 1.0, 0.5, 1.0)
    assert influence_of(InfluencerStats()).value == 0.0
    assert score_quotes([], InfluencerStats()) == (0, "very_low")


def test_ppl_probability_components():
    pats = PplPatterns.load()
    assert ppl_probability(["그냥 좋아서 샀어요"], pats)[0] == 0.0
    prob, found = ppl_probability(["이 영상은 유료광고를 포함하고 있습니다"], pats)
    assert prob == 0.6 and "유료광고" in found["explicit"]
    assert ppl_probability(["Paid partnership with X. use my code SUMMER"], pats)[0] == 0.85
    assert ppl_probability(["협찬 받았고 할인코드는 설명란에"], pats)[0] == 1.0
    assert ppl_probability(["구매 링크는 설명란에"], pats)[0] == 0.15


def test_ppl_pattern_file_is_user_editable(tmp_path):
    f = tmp_path / "ppl.toml"
    f.write_text(
        '[explicit]\npatterns = ["re:광고\\\\s*포함"]\n'
        '[implicit]\npatterns = []\n[context]\npatterns = ["zz"]\n'
    )
    pats = PplPatterns.load(f)
    assert ppl_probability(["광고   포함 영상"], pats)[0] == 0.6
    with pytest.raises(ConfigError, match="not found"):
        PplPatterns.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[explicit\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PplPatterns.load(tmp_path / "bad.toml")


@pytest.mark.parametrize(
    ("ppl", "commerce", "score", "expected"),
    [
        (0.85, True, 90, Status.HIGH_PPL_RISK),
        (0.71, False, 10, Status.HIGH_PPL_RISK),
        (0.7, True, 90, Status.PPL_REVIEW_REQUIRED),
        (0.3, True, 90, Status.PPL_REVIEW_REQUIRED),
        (0.15, False, 90, Status.NO_COMMERCE_MATCH),
        (0.0, True, 60, Status.NEEDS_REVIEW),
        (0.0, True, 59, Status.LOW_SCORE_FILTERED),
    ],
)
def test_routing(ppl, commerce, score, expected):
    assert route(ppl_probability=ppl, has_commerce=commerce, score=score) == expected


def test_transition_table():
    assert check_transition("pending", "processing") == Status.PROCESSING
    assert check_transition("needs_review", "under_revision") == Status.UNDER_REVISION
    assert check_transition("no_commerce_match", "needs_review") == Status.NEEDS_REVIEW
    with pytest.raises(IllegalTransition, match="'pending' cannot become 'approved'"):
        check_transition("pending", "approved")
    with pytest.raises(IllegalTransition, match="unknown status"):
        check_transition("pending", "bogus")


def test_store_enforces_status_machine_with_history(store):
    created = VideoStore(store).upsert_candidate(
        "c1", video_id="v", start=1.0, end=2.0, data={"product_name": "x"}
    )
    assert created is True
    assert (
        VideoStore(store).upsert_candidate("c1", video_id="v", start=1.0, end=2.0, data={"product_name": "y"})
        is False
    )
    for status in ("processing", "analysis_complete", "needs_review", "approved", "published", "archived"):
        VideoStore(store).set_candidate_status("c1", status, actor="tester", reason="step")
    with pytest.raises(IllegalTransition, match="'archived' cannot become 'approved'.*final state"):
        VideoStore(store).set_candidate_status("c1", "approved", actor="tester")
    assert VideoStore(store).candidate_status("c1") == "archived"
    history = VideoStore(store).status_history("c1")
    assert [h["new_status"] for h in history] == [
        "pending", "processing", "analysis_complete", "needs_review", "approved", "published", "archived"
    ]  # fmt: skip
    assert history[0]["old_status"] is None and history[1]["old_status"] == "pending"
    assert all(h["at"] and h["actor"] for h in history)
    assert VideoStore(store).candidates()[0]["product_name"] == "y"
    assert len(VideoStore(store).candidates()) == 1


def test_illegal_transition_changes_nothing(store):
    VideoStore(store).upsert_candidate("c2", video_id="v", start=0, end=1, data={})
    with pytest.raises(IllegalTransition):
        VideoStore(store).set_candidate_status("c2", "published", actor="x")
    assert VideoStore(store).candidate_status("c2") == "pending"
    assert len(VideoStore(store).status_history("c2")) == 1


def test_conviction_lifts_calm_sincere_speech_not_negated_or_hedged():
    """Calm, sincere speech (no "!", no emotion words) reads as a recommendation through conviction
    cues; the same cues negated, outweighed by negative ones, or hedged do not lift it."""
    stats = InfluencerStats(subscribers=500_000, engagement_rate=0.05, consistency=0.75, authenticity=0.8)
    calm = ["이 크림 벌써 세 번째 재구매예요", "2년째 쓰고 있는데 결국 다시 이걸로 돌아오게 돼요"]
    plain = ["이 크림 쓰고 있어요"]
    assert score_quotes(calm, stats)[0] >= 60 > score_quotes(plain, stats)[0]
    en = ["I've used this kettle every morning for over a year.", "I'd buy the same one again."]
    assert score_quotes(en, stats)[0] >= 60
    assert score_quotes(["I wouldn't buy it again."], stats)[0] < 40  # negated
    assert score_quotes(["재구매 안 할 거예요"], stats)[0] < 40
    negative = ["솔직히 2년째 써봤는데 별로예요 실망했어요"]  # negative outweighs the duration cue
    assert sentiment_of(negative).positive == 0.0
    hedged_ = ["재구매는 했는데 글쎄 잘 모르겠어요"]
    assert score_quotes(hedged_, stats)[0] < score_quotes(["재구매는 했는데 좋아요"], stats)[0]
