"""Review decisions (the Prefect pause form's fields) and hand-added links, through the store's
status machine."""

from __future__ import annotations

import pytest

from stageflow.errors import BadInput, IllegalTransition
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import CommerceMatch, VideoEvidence
from stageflow.video.analysis.review import ReviewDecision, apply_review, attach_commerce
from stageflow.video.analysis.rules import RulesAnalyzer

from .conftest import CHANNEL, VIDEO


@pytest.fixture
def filtered_id(store) -> str:
    result = analyze_video(
        VideoEvidence.from_part1(VIDEO, channel=CHANNEL), analyzer=RulesAnalyzer(), store=store
    )
    return result.candidates[0].id  # no commerce given: filtered_no_coupang


def test_link_added_by_hand_then_approved_with_corrected_name(store, filtered_id):
    match = CommerceMatch(
        product_id="9", title="라운드랩 선크림", price=1.0, url="https://link.coupang.com/a/x", similarity=1
    )
    assert attach_commerce(store, filtered_id, match) == "needs_review"
    decision = ReviewDecision(
        candidate_id=filtered_id, action="approve", product_name="라운드랩 자작나무 수분 선크림"
    )
    assert apply_review(store, decision, actor="alice") == "approved"
    row = store.candidate(filtered_id)
    assert row["product_name"] == "라운드랩 자작나무 수분 선크림" and row["commerce"]["product_id"] == "9"
    assert [h["new_status"] for h in store.status_history(filtered_id)][-2:] == ["needs_review", "approved"]
    assert store.status_history(filtered_id)[-1]["actor"] == "alice"


def test_illegal_review_changes_nothing(store, filtered_id):
    with pytest.raises(IllegalTransition, match="'filtered_no_coupang' cannot become 'approved'"):
        apply_review(store, ReviewDecision(candidate_id=filtered_id, action="approve", product_name="X"))
    row = store.candidate(filtered_id)
    assert row["status"] == "filtered_no_coupang" and row["product_name"] != "X"


def test_unknown_candidate(store):
    with pytest.raises(BadInput, match="not in the store"):
        apply_review(store, ReviewDecision(candidate_id="nope", action="reject"))
