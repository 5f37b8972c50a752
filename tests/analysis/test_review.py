"""Review decisions (the Prefect pause form's fields) and hand-added links, through the store's
status machine."""

from __future__ import annotations

import pytest

from stageflow.errors import BadInput, IllegalTransition
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import CommerceMatch, VideoEvidence
from stageflow.video.analysis.review import ReviewDecision, apply_review, attach_commerce
from stageflow.video.analysis.rules import RulesAnalyzer
from stageflow.video.store import VideoStore

from .conftest import CHANNEL, VIDEO


@pytest.fixture
def filtered_id(store) -> str:
    result = analyze_video(
        VideoEvidence.from_part1(VIDEO, channel=CHANNEL), analyzer=RulesAnalyzer(), store=store
    )
    return result.candidates[0].id  # no commerce given: no_commerce_match


def test_link_added_by_hand_then_approved_with_corrected_name(store, filtered_id):
    match = CommerceMatch(
        product_id="9", title="라운드랩 선크림", price=1.0, url="https://link.coupang.com/a/x", similarity=1
    )
    assert attach_commerce(store, filtered_id, match) == "needs_review"
    decision = ReviewDecision(
        candidate_id=filtered_id, action="approve", product_name="라운드랩 자작나무 수분 선크림"
    )
    assert apply_review(store, decision, actor="alice") == "approved"
    row = VideoStore(store).candidate(filtered_id)
    assert row["product_name"] == "라운드랩 자작나무 수분 선크림" and row["commerce"]["product_id"] == "9"
    assert [h["new_status"] for h in VideoStore(store).status_history(filtered_id)][-2:] == [
        "needs_review",
        "approved",
    ]
    assert VideoStore(store).status_history(filtered_id)[-1]["actor"] == "alice"


def test_illegal_review_changes_nothing(store, filtered_id):
    with pytest.raises(IllegalTransition, match="'no_commerce_match' cannot become 'approved'"):
        apply_review(store, ReviewDecision(candidate_id=filtered_id, action="approve", product_name="X"))
    row = VideoStore(store).candidate(filtered_id)
    assert row["status"] == "no_commerce_match" and row["product_name"] != "X"


def test_unknown_candidate(store):
    with pytest.raises(BadInput, match="not in the store"):
        apply_review(store, ReviewDecision(candidate_id="nope", action="reject"))


# --------------------------------------------------------------------------- the Prefect UI form's logic


def _needs_review(store, video_id: str, start: float, **data) -> str:
    from stageflow.video.analysis.evidence import candidate_id

    cid = candidate_id(video_id, start, start + 5)
    VideoStore(store).upsert_candidate(
        cid, video_id=video_id, start=start, end=start + 5, data={"start": start, "end": start + 5, **data}
    )
    for status in ("processing", "analysis_complete", "needs_review"):
        VideoStore(store).set_candidate_status(cid, status, actor="engine")
    return cid


@pytest.fixture
def queue(store) -> list[str]:
    link = {"url": "https://link.coupang.com/a/abc", "product_id": "1", "title": "t", "similarity": 0.9}
    a = _needs_review(store, "v1", 0, product_name="선크림", brand="라운드랩", score=72, score_band="medium",
                      ppl_probability=0.0, commerce=link, clip="/out/clips/0.mp4")  # fmt: skip
    b = _needs_review(store, "v1", 10, product_name="확인 필요", brand=None, score=61, ppl_probability=0.1)
    c = _needs_review(store, "v2", 0, product_name="MX Master", brand="Logitech | MX", score=65)
    return [a, b, c]


def test_review_queue_description_and_prefilled_rows(store, queue):
    from stageflow.video.analysis.review import review_description, review_items, review_queue

    rows = review_queue(store, ["v1", "v2", "v1", "v3"])
    assert [r["id"] for r in rows] == queue
    VideoStore(store).set_candidate_status(queue[1], "rejected", actor="sheet")
    rows = review_queue(store, ["v1", "v2"])
    assert [r["id"] for r in rows] == [queue[0], queue[2]]
    md = review_description(rows, timeout_s=600)
    lines = md.splitlines()
    assert lines[0] == "## 2 candidate(s) need review"
    assert lines[4] == (
        f"| `{queue[0]}` | 선크림 | 라운드랩 | 72 (medium) | 0.00 | [link](https://link.coupang.com/a/abc)"
        " | `/out/clips/0.mp4` |"
    )
    assert lines[5] == f"| `{queue[2]}` | MX Master | Logitech \\| MX | 65 (None) | 0.00 | – | – |"
    assert "within 600 s" in md
    items = review_items(rows)
    assert [(i.candidate_id, i.action, i.label) for i in items] == [
        (queue[0], "keep", "선크림 (라운드랩, score 72)"),
        (queue[2], "keep", "MX Master (Logitech | MX, score 65)"),
    ]


def test_apply_decisions_applies_each_and_reports_the_rest(store, queue):
    from stageflow.video.analysis.review import apply_decisions, review_actor

    a, b, c = queue
    VideoStore(store).set_candidate_status(c, "approved", actor="sheet")  # decided in the sheet meanwhile
    actor = review_actor("  Kim   Min ")
    assert actor == "prefect-ui:Kim Min" and review_actor("") == "prefect-ui:reviewer"
    report = apply_decisions(
        store,
        [
            {
                "candidate_id": a,
                "action": "approve",
                "product_name": " 라운드랩 자작나무 선크림 ",
                "note": "ok",
            },
            {"candidate_id": b, "action": "keep", "product_name": "바이오더마 클렌징워터"},
            {"candidate_id": c, "action": "reject"},
            {"candidate_id": "elsewhere", "action": "approve"},
        ],
        actor=actor,
        offered=queue,
    )
    assert report["changed"] == [
        {"id": a, "from": "needs_review", "to": "approved", "product_name": "라운드랩 자작나무 선크림"}
    ]
    assert report["renamed"] == [a, b] and report["kept"] == [b]
    assert report["errors"] == [
        f"{c}: candidate {c}: status 'approved' cannot become 'rejected' (allowed next: published)",
        "elsewhere: not among the candidates offered for review; nothing applied",
    ]
    assert VideoStore(store).candidate(a)["product_name"] == "라운드랩 자작나무 선크림"
    assert VideoStore(store).status_history(a)[-1] == {
        **VideoStore(store).status_history(a)[-1], "old_status": "needs_review", "new_status": "approved",
        "actor": "prefect-ui:Kim Min", "reason": "ok",
    }  # fmt: skip
    assert (VideoStore(store).candidate_status(b), VideoStore(store).candidate(b)["product_name"]) == (
        "needs_review",
        "바이오더마 클렌징워터",
    )
    assert VideoStore(store).candidate_status(c) == "approved"
    assert [h["actor"] for h in VideoStore(store).status_history(c)][-1] == "sheet"


def test_apply_decisions_revise_and_unknown_action(store, queue):
    from pydantic import ValidationError

    from stageflow.video.analysis.review import apply_decisions

    report = apply_decisions(store, [{"candidate_id": queue[0], "action": "revise"}], actor="prefect-ui:x")
    assert report["changed"][0]["to"] == "under_revision" and report["errors"] == []
    with pytest.raises(ValidationError):
        apply_decisions(store, [{"candidate_id": queue[1], "action": "publish"}], actor="prefect-ui:x")
    assert VideoStore(store).candidate_status(queue[1]) == "needs_review"
