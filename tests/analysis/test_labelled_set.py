"""The labelled set (labelled_set.json, issue 18): realistic Korean and English videos (genuine
recommendations, passing mentions, sponsored videos, calls to action, OCR errors and junk) analysed
by the rules analyzer with the local Coupang-shaped server. Precision and recall of "reaches
needs_review" and of product naming must both be >= 0.8; searches per candidate <= 2 cold, 0 warm.

Run with ``-s`` to see the table (docs/analysis.md quotes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from stageflow.commerce.coupang import CoupangClient, CoupangConfig
from stageflow.video.analysis.engine import analyze_video
from stageflow.video.analysis.evidence import NEEDS_CHECK, VideoEvidence
from stageflow.video.analysis.naming import names_agree
from stageflow.video.analysis.rules import RulesAnalyzer, RulesConfig
from stageflow.video.analysis.similarity import normalize

from .conftest import ACCESS_KEY, SECRET_KEY
from .servers import CoupangServer

SET = json.loads((Path(__file__).parent / "labelled_set.json").read_text(encoding="utf-8"))
#: written before it was scored and never used to tune the lexicon (issue 18 item 5): the honest figure
HELDOUT = json.loads((Path(__file__).parent / "heldout_set.json").read_text(encoding="utf-8"))
#: written blind before the conviction scoring change and scored once after it: the honest figure now
#: (heldout_set.json became tuning data for that change)
HELDOUT2 = json.loads((Path(__file__).parent / "heldout2_set.json").read_text(encoding="utf-8"))


def _compact(text: str) -> str:
    return "".join(normalize(text).split())


def name_ok(pred: str, truth: str) -> bool:
    return names_agree(pred, truth) or _compact(truth) in _compact(pred)


def named_right(cand: Any, truth: dict[str, Any]) -> bool:
    brands = truth["brand"] if isinstance(truth["brand"], list) else [truth["brand"]]
    brand_ok = (cand.brand or None) in brands
    return cand.product_name != NEEDS_CHECK and name_ok(cand.product_name, truth["name"]) and brand_ok


def overlaps(cand: Any, truth: dict[str, Any]) -> bool:
    return cand.start < truth["end"] and max(cand.end, cand.start + 0.01) > truth["start"]


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


@pytest.fixture
def catalog_server(request):
    labelled = getattr(request, "param", SET)
    with CoupangServer(ACCESS_KEY, SECRET_KEY, labelled["catalog"]) as server:
        yield server


def client_for(server: CoupangServer, store: Any, sleeps: Any) -> CoupangClient:
    cfg = CoupangConfig(
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        base_url=server.url,
        backoff_s=0.01,
        search_per_hour=1000,
        use_store=True,
        alerts=False,
    )
    return CoupangClient(cfg, store=store, sleep=sleeps)


def run_set(store: Any, server: CoupangServer, sleeps: Any, labelled: dict[str, Any] = SET) -> dict[str, Any]:
    client = client_for(server, store, sleeps)
    analyzer = RulesAnalyzer(RulesConfig(brands=labelled["brands"]))
    rows, searches = [], {}
    named = {"tp": 0, "pred": 0, "truth_hit": 0, "truth": 0}
    review = {"tp": 0, "pred": 0, "truth_hit": 0, "truth": 0}
    for video in labelled["videos"]:
        before = len(server.calls("search"))
        ev = VideoEvidence.from_part1(video, channel=video["channel"])
        result = analyze_video(ev, analyzer=analyzer, commerce=client, store=store)
        searches[video["id"]] = (len(server.calls("search")) - before, len(result.candidates))
        truths = video["truth"]
        for cand in result.candidates:
            hit = next((t for t in truths if overlaps(cand, t) and named_right(cand, t)), None)
            near = next((t for t in truths if overlaps(cand, t)), None)
            if cand.product_name != NEEDS_CHECK and not (near and near.get("optional") and hit is None):
                named["pred"] += 1
                named["tp"] += hit is not None
            if cand.status == "needs_review":
                review["pred"] += 1
                review["tp"] += bool(hit and hit["review"])
            rows.append(
                (video["id"], cand.product_name, cand.brand, cand.score, cand.status, hit is not None)
            )
        for t in truths:
            if t.get("optional"):
                continue
            named["truth"] += 1
            named["truth_hit"] += any(overlaps(c, t) and named_right(c, t) for c in result.candidates)
            if t["review"]:
                review["truth"] += 1
                review["truth_hit"] += any(
                    overlaps(c, t) and named_right(c, t) and c.status == "needs_review"
                    for c in result.candidates
                )
    return {
        "rows": rows,
        "searches": searches,
        "naming": (_ratio(named["tp"], named["pred"]), _ratio(named["truth_hit"], named["truth"])),
        "review": (_ratio(review["tp"], review["pred"]), _ratio(review["truth_hit"], review["truth"])),
        "counts": {"naming": named, "review": review},
    }


def _table(out: dict[str, Any]) -> None:
    print("\nvideo | product | brand | score | status | right")
    for row in out["rows"]:
        print(" | ".join(str(x) for x in row))
    print("\n| measure | precision | recall |\n|---|---|---|")
    for what in ("review", "naming"):
        p, r = out[what]
        print(f"| {what} | {p:.2f} | {r:.2f} |   {out['counts'][what]}")
    print("searches (video: searches, candidates):", out["searches"])


def test_labelled_set_precision_and_recall(store, catalog_server, sleeps):
    assert len(SET["videos"]) >= 12
    out = run_set(store, catalog_server, sleeps)
    _table(out)
    p, r = out["review"]
    assert p >= 0.8 and r >= 0.8, out
    p, r = out["naming"]
    assert p >= 0.8 and r >= 0.8, out
    # searches: at most 2 per candidate on a cold store
    assert all(s <= 2 * max(1, n) for s, n in out["searches"].values()), out["searches"]
    # warm: the same videos again ask Coupang nothing (stored matches, 1 h search cache)
    before = len(catalog_server.requests)
    again = run_set(store, catalog_server, sleeps)
    assert catalog_server.requests[before:] == []
    assert again["review"] == out["review"]


@pytest.mark.parametrize("catalog_server", [HELDOUT], indirect=True)
def test_heldout_set_precision_and_recall(store, catalog_server, sleeps):
    """The held-out set: reported (``-s``) and held to the figures measured after the bug fixes, so a
    regression shows; the >= 0.8 goal is the tuning set's (docs/analysis.md has both tables)."""
    assert len(HELDOUT["videos"]) >= 8
    assert not {v["id"] for v in HELDOUT["videos"]} & {v["id"] for v in SET["videos"]}
    out = run_set(store, catalog_server, sleeps, HELDOUT)
    _table(out)
    # tuning data for the conviction scoring (docs/analysis.md): review 1.00 / 1.00, naming 1.00 / 1.00
    p, r = out["naming"]
    assert p >= 0.9 and r >= 0.85, out
    p, r = out["review"]
    assert p == 1.0 and r >= 0.8, out
    assert all(s <= 2 * max(1, n) for s, n in out["searches"].values()), out["searches"]


@pytest.mark.parametrize("catalog_server", [HELDOUT2], indirect=True)
def test_heldout2_set_precision_and_recall(store, catalog_server, sleeps):
    """The blind set (written before the conviction scoring, measured once after it): held a little
    below what was measured, review P 0.75 R 0.43 and naming P 0.85 R 0.80 (docs/analysis.md says
    what fails: English-only names with Korean catalogue titles, a one-syllable spoken brand)."""
    assert len(HELDOUT2["videos"]) >= 12
    ids = {v["id"] for v in HELDOUT2["videos"]}
    assert not ids & ({v["id"] for v in SET["videos"]} | {v["id"] for v in HELDOUT["videos"]})
    out = run_set(store, catalog_server, sleeps, HELDOUT2)
    _table(out)
    p, r = out["review"]
    assert p >= 0.7 and r >= 0.4, out
    p, r = out["naming"]
    assert p >= 0.8 and r >= 0.75, out
    # the scores themselves separate the set: every genuine recommendation scores >= 60, and nothing
    # that is not one does unless PPL routes it away
    truths = {v["id"]: v["truth"] for v in HELDOUT2["videos"]}
    for vid, _name, _brand, score, status, _ok in out["rows"]:
        genuine = any(t["review"] for t in truths[vid])
        assert (score >= 60) == genuine or status.startswith(("ppl", "high_ppl")), (vid, score, status)
    assert all(s <= 2 * max(1, n) for s, n in out["searches"].values()), out["searches"]
