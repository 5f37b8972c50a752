"""The analysis engine for one video: ranges (pass a) -> candidate per range (pass b) -> score,
PPL, commerce match, clip -> route through the status machine, stored when a store is given.

Plain function, no Prefect: the video flow wraps ``analyze_video`` in a task. A failing range is
recorded and the others continue; a commerce outage leaves that candidate without a match (routed to
no_commerce_match, which a person can move back to needs_review). Re-running a video updates its
rows and never duplicates them; a candidate the engine routed is routed again when the evidence
changed (a commerce backend configured later, new PPL evidence, a better score), through the status
machine with history; a candidate a person moved keeps its status. PPL is computed per candidate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stageflow.errors import StageflowError
from stageflow.video.analysis.evidence import (
    Candidate,
    CommerceMatch,
    FrameIn,
    TimeRange,
    VideoEvidence,
    candidate_id,
    segments_in,
)
from stageflow.video.analysis.ppl import PplPatterns, candidate_ppl, ppl_probability, video_disclosures
from stageflow.video.analysis.routing import Status, may_reroute, route
from stageflow.video.analysis.scoring import score_quotes
from stageflow.video.store import video_store

log = logging.getLogger("stageflow.analysis")

#: clipper(start, end) -> (clip path, thumbnail path); part 1's clip stage, given by the flow.
Clipper = Callable[[float, float], tuple[str | None, str | None]]


@dataclass(frozen=True)
class FailedRange:
    start: float
    end: float
    error: str


@dataclass
class AnalysisResult:
    video_id: str
    candidates: list[Candidate] = field(default_factory=list)
    failed: list[FailedRange] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # non-fatal: commerce, clips
    ppl_probability: float = 0.0
    ppl_matches: dict[str, list[str]] = field(default_factory=dict)

    def to_output(self) -> list[dict[str, Any]]:
        """The ``candidates`` list of ``stageflow analyze --json`` for this video."""
        return [c.to_output() for c in self.candidates]


def analyze_video(
    evidence: VideoEvidence | Mapping[str, Any],
    *,
    analyzer: Any,
    commerce: Any | None = None,
    store: Any | None = None,
    ppl_patterns: PplPatterns | None = None,
    clipper: Clipper | None = None,
    actor: str = "engine",
    commerce_limit: int = 10,
    frames: Sequence[tuple[float, str]] | None = None,
) -> AnalysisResult:
    """Analyze one video. ``frames``: optional kept frames ``(t, jpeg path)`` of the video, handed to
    the analyzer as visual evidence (a model analyzer sends those of each range).
    ``evidence``: a VideoEvidence or one entry of part 1's ``videos`` list.
    ``analyzer``: an Analyzer backend (rules, gemini). ``commerce``: a CommerceApi, several tried in
    order (the first that matches wins), or None (then every candidate is no_commerce_match).
    ``store``: a stageflow Store or its VideoStore view (videos, candidates and status_history are
    written; illegal transitions raise)."""
    from stageflow.commerce.matching import find_match

    clients = list(commerce) if isinstance(commerce, list | tuple) else [] if commerce is None else [commerce]
    store = None if store is None else video_store(store)
    ev = evidence if isinstance(evidence, VideoEvidence) else VideoEvidence.from_part1(evidence)
    if frames:
        ev = ev.model_copy(update={"frames": tuple(FrameIn(t=t, path=str(p)) for t, p in frames)})
    patterns = ppl_patterns or PplPatterns.load()
    on_screen = [x.text for x in ev.texts]  # one per text per on-screen interval
    texts = [ev.title, *(s.text for s in ev.transcript), *on_screen]
    ppl, matches = ppl_probability(texts, patterns)  # video level, for the video row and the summary
    wide = video_disclosures(ev.title, [s.text for s in ev.transcript], on_screen, patterns)
    result = AnalysisResult(ev.video_id, ppl_probability=ppl, ppl_matches=matches)
    if store is not None:
        store.upsert_video(ev.video_id, title=ev.title, source=ev.source, data={"ppl_probability": ppl})

    try:
        ranges: list[TimeRange] = list(analyzer.find_ranges(ev.transcript)) if ev.transcript else []
    except StageflowError as exc:
        result.failed.append(FailedRange(0.0, ev.duration_s or 0.0, f"finding ranges: {exc}"))
        ranges = []
    if hasattr(analyzer, "ocr_ranges"):
        ranges += analyzer.ocr_ranges(ev, ranges)

    for rng in ranges:
        cid = candidate_id(ev.video_id, rng.start, rng.end)
        status = _begin(store, cid, ev.video_id, rng, actor)
        try:
            cand = analyzer.candidate(rng, ev)
        except StageflowError as exc:
            result.failed.append(FailedRange(rng.start, rng.end, str(exc)))
            if status == Status.PROCESSING and store is not None:  # (a status implies a store)
                store.set_candidate_status(cid, Status.FAILED, actor=actor, reason=str(exc)[:200])
            continue
        cand = cand.model_copy(update={"video_id": ev.video_id, "start": rng.start, "end": rng.end})

        spoken = [s.text for s in segments_in(ev.transcript, rng.start, rng.end)]
        quotes = spoken or list(cand.evidence.ocr_texts)
        score, band = score_quotes(quotes, ev.channel)
        cand_ppl, found = candidate_ppl(
            video_wide=wide, speech=spoken, ocr=cand.evidence.ocr_texts, patterns=patterns
        )
        stored = store.candidate(cid) if store is not None else None
        decided = status is not None and status not in (Status.PROCESSING, *_ROUTED)
        match = _stored_match(stored, cand.product_name)
        for api in () if match is not None or decided else clients:  # in order; the first match wins
            try:
                match = find_match(
                    api, cand.product_name, cand.brand, cand.category_path, limit=commerce_limit
                )
            except StageflowError as exc:  # that backend is down: the next one may still match
                result.errors.append(f"commerce for {cand.product_name} at {rng.start:.1f}s: {exc}")
                continue
            if match is not None:
                break
        if match is not None and not cand.brand:  # a brand the list does not know, named by the match
            from stageflow.commerce.matching import brand_from_title

            if found_brand := brand_from_title(cand.product_name, match.title):
                cand = cand.model_copy(update={"brand": found_brand})
        clip = thumb = None
        if clipper is not None:
            try:
                # a point range (on-screen text in one frame) still gets a clip: +-1 s around it
                clip, thumb = clipper(
                    *(
                        (rng.start, rng.end)
                        if rng.end > rng.start
                        else (max(0.0, rng.start - 1), rng.start + 1)
                    )
                )
            except Exception as exc:  # noqa: BLE001 - a clip failure never loses the candidate
                result.errors.append(f"clip {rng.start:.1f}-{rng.end:.1f}s: {exc}")
        routed = route(ppl_probability=cand_ppl, has_commerce=match is not None, score=score)
        ppl_found = tuple(p for kind in ("explicit", "implicit", "context") for p in found.get(kind, ()))
        cand = cand.model_copy(
            update={
                "score": score,
                "score_band": band,
                "ppl_probability": cand_ppl,
                "commerce": match,
                "clip": clip,
                "thumbnail": thumb,
                "status": routed.value,
                "evidence": cand.evidence.model_copy(update={"ppl": ppl_found}),
            }
        )
        if store is not None:
            data = cand.to_output()
            store.upsert_candidate(
                cid, video_id=ev.video_id, start=rng.start, end=rng.end, data=data, actor=actor
            )
            why = _why(cand_ppl, match, score)
            if status == Status.PROCESSING:
                store.set_candidate_status(cid, Status.ANALYSIS_COMPLETE, actor=actor)
                store.set_candidate_status(cid, routed, actor=actor, reason=why)
            elif status != routed and may_reroute(status, _last_actor(store, cid), actor):
                for step in (Status.PROCESSING, Status.ANALYSIS_COMPLETE):
                    store.set_candidate_status(cid, step, actor=actor, reason="re-analysis")
                store.set_candidate_status(cid, routed, actor=actor, reason=f"re-analysis: {why}")
            else:  # unchanged, or reviewed in an earlier run: keep what people decided
                cand = cand.model_copy(update={"status": store.candidate_status(cid)})
        result.candidates.append(cand)
    return result


_ROUTED = (
    Status.HIGH_PPL_RISK,
    Status.PPL_REVIEW_REQUIRED,
    Status.NO_COMMERCE_MATCH,
    Status.NEEDS_REVIEW,
    Status.LOW_SCORE_FILTERED,
)


def _stored_match(stored: Mapping[str, Any] | None, name: str) -> CommerceMatch | None:
    """The commerce match a previous run stored for this candidate under the same name (no search
    on a warm re-run)."""
    if not stored or not stored.get("commerce") or stored.get("product_name") != name:
        return None
    try:
        return CommerceMatch.model_validate(stored["commerce"])
    except ValueError:
        return None


def _last_actor(store: Any, cid: str) -> str | None:
    history = store.status_history(cid)
    return str(history[-1]["actor"]) if history else None


def _begin(store: Any | None, cid: str, video_id: str, rng: TimeRange, actor: str) -> Status | None:
    """Create the row (pending) and move it to processing; None when it was already past that."""
    if store is None:
        return None
    if store.candidate_status(cid) is None:
        store.upsert_candidate(
            cid,
            video_id=video_id,
            start=rng.start,
            end=rng.end,
            data={"start": rng.start, "end": rng.end},
            actor=actor,
        )
    current = store.candidate_status(cid)
    if current in (Status.PENDING, Status.FAILED):
        store.set_candidate_status(cid, Status.PROCESSING, actor=actor)
        return Status.PROCESSING
    return Status(current)


def _why(ppl: float, match: Any, score: int) -> str:
    return f"ppl={ppl:.2f} commerce={'yes' if match else 'no'} score={score}"


def summary_message(run_id: str, results: list[AnalysisResult], *, top: int = 5) -> Any:
    """The run summary a notifier posts: counts, the top candidates by score, and any errors. The run
    id is part of the message, so a retried task posts the same message (deduplicated by the notifier)."""
    from stageflow.stages import Message

    cands = [c for r in results for c in r.candidates]
    best = sorted(cands, key=lambda c: (-(c.score or 0), c.video_id, c.start))[:top]
    lines = []
    for i, c in enumerate(best, 1):
        name = f"{c.brand} {c.product_name}" if c.brand and c.brand not in c.product_name else c.product_name
        link = f" <{c.commerce.url}|쿠팡>" if c.commerce else ""
        lines.append(f"{i}. {name} — score {c.score} ({c.score_band}), {c.status}{link}")
    errors = [f"{r.video_id}: {f.start:.1f}-{f.end:.1f}s {f.error}" for r in results for f in r.failed]
    errors += [f"{r.video_id}: {e}" for r in results for e in r.errors]
    text = "\n".join(lines) or "no candidates"
    if errors:
        text += (
            "\n*errors*\n"
            + "\n".join(errors[:10])
            + (f"\n… {len(errors) - 10} more" if len(errors) > 10 else "")
        )
    return Message(
        title=f"video analysis: {len(cands)} candidates from {len(results)} videos",
        text=text,
        level="warning" if errors else "info",
        fields={
            "run": run_id,
            "needs_review": str(sum(c.status == Status.NEEDS_REVIEW for c in cands)),
            "ppl_flagged": str(
                sum(c.status in (Status.HIGH_PPL_RISK, Status.PPL_REVIEW_REQUIRED) for c in cands)
            ),
            "failed_ranges": str(sum(len(r.failed) for r in results)),
        },
    )
