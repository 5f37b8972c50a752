"""The offline ``rules`` analyzer: pass a (cue lexicon, Korean + English), pass b (OCR matched to
speech, category hints, "확인 필요" for unclear names), OCR-only ranges, and text matching scores."""

from __future__ import annotations

import pytest

from stageflow.video.analysis.evidence import NEEDS_CHECK, TimeRange, VideoEvidence
from stageflow.video.analysis.rules import RulesAnalyzer, RulesConfig
from stageflow.video.analysis.similarity import text_match, title_similarity

from .conftest import VIDEO


@pytest.fixture
def ev() -> VideoEvidence:
    return VideoEvidence.from_part1(VIDEO)


def test_text_match_exact_substring_jaccard():
    assert text_match("라운드랩 선크림", "오늘은 라운드랩 선크림 써요") == 1.0
    assert text_match("라운드랩 선크림", "라운드랩 선크림을 발라요") == 0.9  # particle: substring
    assert text_match("Logitech MX Master 3S", "this Logitech MX Master is my mouse") == pytest.approx(0.6)
    assert text_match("완전히 다른 글자", "오늘 날씨") == 0.0
    assert text_match("", "x") == 0.0


def test_title_similarity_weights():
    assert title_similarity("a b", "a b", None) == pytest.approx(0.8)  # 0.4 ratio + 0.4 overlap
    assert title_similarity("라운드랩 선크림", "라운드랩 선크림", "라운드랩") == pytest.approx(1.0)
    assert title_similarity("xyz", "", None) == 0.0


def test_find_ranges_korean_and_english(ev):
    ranges = RulesAnalyzer().find_ranges(ev.transcript)
    # the greeting (no cue, no product) is not part of the range any more
    assert [(r.start, r.end) for r in ranges] == [(4.0, 14.0), (40.0, 45.0)]
    assert "usage" in ranges[0].reason and "demonstration" in ranges[0].reason
    assert "recommend" in ranges[1].reason


def test_brand_mention_alone_is_not_a_range():
    segs = [
        {"start": 0, "end": 3, "text": "나이키 얘기가 나왔는데 다음에 할게요"},
        {"start": 3, "end": 6, "text": "Apple is a company."},
    ]
    assert RulesAnalyzer().find_ranges(segs) == []


def test_empty_transcript_gives_no_ranges(ev):
    assert RulesAnalyzer().find_ranges([]) == []
    assert RulesAnalyzer().find_ranges([{"start": 0, "end": 1, "text": "   "}]) == []


def test_candidate_from_speech_and_ocr(ev):
    rules = RulesAnalyzer()
    c = rules.candidate(TimeRange(start=4, end=14), ev)
    assert c.product_name == "라운드랩 자작나무 선크림"
    assert c.brand == "라운드랩"
    assert c.category_path == ("뷰티", "스킨케어")
    assert c.evidence.ocr_texts == ("라운드랩 자작나무 선크림",)
    assert c.evidence.detections == ("bottle",)
    assert c.evidence.frame_times == (6.0, 12.0)
    assert len(c.evidence.quotes) == 2
    assert c.hook_sentence == "진짜 촉촉하고 너무 좋아요! 강추!"
    assert c.features == ("진짜 촉촉하고 너무 좋아요! 강추!",)
    assert "#라운드랩" in c.hashtags
    assert 0.8 <= c.confidence <= 0.95
    c2 = rules.candidate(TimeRange(start=40, end=45), ev)
    assert c2.product_name == "Logitech MX Master 3S" and c2.brand == "로지텍"
    assert c2.category_path == ("디지털", "마우스")


def test_unclear_name_is_needs_check_never_invented():
    ev = VideoEvidence.from_part1(
        {
            "id": "v2",
            "transcript": [{"start": 0, "end": 5, "text": "이거 요즘 매일 쓰고 있는데 진짜 추천해요"}],
            "ocr": [{"t": 2, "text": "구독 좋아요", "confidence": 0.9}],
            "detections": [],
        }
    )
    rules = RulesAnalyzer()
    (rng,) = rules.find_ranges(ev.transcript)
    c = rules.candidate(rng, ev)
    assert c.product_name == NEEDS_CHECK
    assert c.brand is None and c.category_path == ()
    assert c.confidence <= 0.5


def test_on_screen_text_alone_gives_lower_confidence_candidate(ev):
    rules = RulesAnalyzer()
    speech = rules.find_ranges(ev.transcript)
    ocr_ranges = rules.ocr_ranges(ev, speech)
    assert [(r.start, r.end, r.origin) for r in ocr_ranges] == [(60.0, 60.0, "ocr")]
    c = rules.candidate(ocr_ranges[0], ev)
    assert c.product_name == "다이슨 에어랩" and c.brand == "다이슨"
    assert c.evidence.quotes == ()
    assert c.confidence < rules.candidate(speech[0], ev).confidence
    assert c.confidence <= 0.35


def test_extra_brands_from_config():
    rules = RulesAnalyzer(RulesConfig(brands={"스탠리": ["stanley"]}))
    ev = VideoEvidence.from_part1(
        {
            "id": "v3",
            "transcript": [{"start": 0, "end": 4, "text": "I use this Stanley tumbler every day"}],
            "ocr": [{"t": 1, "text": "STANLEY Quencher", "confidence": 0.9}],
        }
    )
    c = rules.candidate(rules.find_ranges(ev.transcript)[0], ev)
    assert c.brand == "스탠리"


# ------------------------------------------------------------------ merged on-screen texts (issue 13)
STATIC_SHOT = {
    "id": "static",
    "title": "아침 루틴",
    "transcript": [
        {"start": 0.0, "end": 3.0, "text": "안녕하세요 오늘은 아침 루틴이에요"},
        {"start": 9.0, "end": 12.0, "text": "요즘 매일 쓰는 토너인데 진짜 촉촉하고 추천해요"},
    ],
    # part 1's merged item: the caption on screen 2-20 s, read on ten kept frames (a steady frame
    # every 2 s); the per-frame reads say the same, frame by frame
    "texts": [
        {"text": "라운드랩 독도 토너", "first_t": 2.0, "last_t": 20.0, "confidence": 0.93,
         "box": [40, 600, 680, 660], "frames": 10, "engine": "tesseract", "hangul_ratio": 1.0},
    ],
    "ocr": [
        {"t": float(t), "text": "라운드랩 독도 토너", "confidence": 0.93, "box": [40, 600, 680, 660]}
        for t in range(2, 21, 2)
    ],
}  # fmt: skip


def test_analysis_reads_the_merged_texts_one_item_per_caption_interval():
    """A static shot's caption is one item 2-20 s: it belongs to the speech range it overlaps (its
    part inside the range's window), and gives no OCR-only range of its own beside it."""
    ev = VideoEvidence.from_part1(STATIC_SHOT)
    assert [(x.text, x.first_t, x.last_t, x.frames) for x in ev.texts] == [
        ("라운드랩 독도 토너", 2.0, 20.0, 10)
    ]
    rules = RulesAnalyzer()
    speech = rules.find_ranges(ev.transcript)
    assert [(r.start, r.end) for r in speech] == [(9.0, 12.0)]
    assert rules.ocr_ranges(ev, speech) == []  # on screen during the speech range: not a range of its own
    c = rules.candidate(speech[0], ev)
    assert c.product_name == "라운드랩 독도 토너" and c.brand == "라운드랩"
    assert c.evidence.ocr_texts == ("라운드랩 독도 토너",)
    assert c.evidence.frame_times == (7.0, 14.0)  # on screen across the range's +-2 s window


def test_per_frame_reads_without_texts_fold_into_the_same_items():
    """A document with only per-frame ``ocr`` (hand-written, or stored before ``texts``) is folded by
    part 1's rule: the same text in the same box at most 5 s apart is one item."""
    only_reads = {k: v for k, v in STATIC_SHOT.items() if k != "texts"}
    folded = VideoEvidence.from_part1(only_reads).texts
    assert [(x.text, x.first_t, x.last_t, x.frames) for x in folded] == [
        ("라운드랩 독도 토너", 2.0, 20.0, 10)
    ]
    gap = VideoEvidence.from_part1(VIDEO).texts  # 6 s between the two sunscreen reads: two intervals
    assert [(x.text, x.first_t, x.last_t) for x in gap][:2] == [
        ("라운드랩 자작나무 선크림", 6.0, 6.0),
        ("라운드랩 자작나무 선크림", 12.0, 12.0),
    ]
    no_box = VideoEvidence.from_part1(
        {"id": "nb", "ocr": [{"t": 1, "text": "STANLEY Quencher"}, {"t": 3, "text": "STANLEY Quencher"}]}
    ).texts
    assert [(x.first_t, x.last_t, x.box) for x in no_box] == [(1.0, 3.0, None)]  # joined by text
