"""Candidate routing and the status machine.

Routing (first rule that applies): PPL > 0.7 -> high_ppl_risk; 0.3 <= PPL <= 0.7 ->
ppl_review_required; no commerce match -> filtered_no_coupang; score >= 60 -> needs_review;
otherwise low_score_filtered.

Re-routing: a candidate the engine routed (one of ``ROUTED``, last moved by the engine) is routed
again on re-analysis through processing -> analysis_complete -> the new route; a candidate a person
moved (approved, rejected, needs_review by hand, ...) keeps its status (``may_reroute``).

Allowed transitions are listed in ``TRANSITIONS``; anything else raises IllegalTransition. The store
enforces this table on every status change (and records it in status_history). No I/O here.
"""

from __future__ import annotations

from enum import StrEnum

from stageflow.errors import IllegalTransition


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    ANALYSIS_COMPLETE = "analysis_complete"
    FAILED = "failed"
    HIGH_PPL_RISK = "high_ppl_risk"
    PPL_REVIEW_REQUIRED = "ppl_review_required"
    FILTERED_NO_COUPANG = "filtered_no_coupang"
    NEEDS_REVIEW = "needs_review"
    LOW_SCORE_FILTERED = "low_score_filtered"
    APPROVED = "approved"
    REJECTED = "rejected"
    UNDER_REVISION = "under_revision"
    PUBLISHED = "published"
    ARCHIVED = "archived"


ROUTED = (
    Status.HIGH_PPL_RISK,
    Status.PPL_REVIEW_REQUIRED,
    Status.FILTERED_NO_COUPANG,
    Status.NEEDS_REVIEW,
    Status.LOW_SCORE_FILTERED,
)

S = Status
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PENDING: frozenset({S.PROCESSING}),
    S.PROCESSING: frozenset({S.ANALYSIS_COMPLETE, S.FAILED}),
    S.ANALYSIS_COMPLETE: frozenset(ROUTED),
    S.FAILED: frozenset({S.PROCESSING}),  # a re-run may retry a failed candidate
    # a machine-routed candidate may be analysed again (re-run, later commerce match, better PPL
    # evidence): routed -> processing -> analysis_complete -> routed, every step in status_history
    S.NEEDS_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.UNDER_REVISION, S.PROCESSING}),
    S.APPROVED: frozenset({S.PUBLISHED}),
    S.PUBLISHED: frozenset({S.ARCHIVED}),
    S.FILTERED_NO_COUPANG: frozenset({S.NEEDS_REVIEW, S.PROCESSING}),  # a link added by hand
    # issue silent; our choice: a person decides PPL cases, and a revision comes back to review
    S.PPL_REVIEW_REQUIRED: frozenset({S.NEEDS_REVIEW, S.REJECTED, S.PROCESSING}),
    S.HIGH_PPL_RISK: frozenset({S.REJECTED, S.PPL_REVIEW_REQUIRED, S.PROCESSING}),
    S.UNDER_REVISION: frozenset({S.NEEDS_REVIEW}),
    # a reviewer can rescue a low-scored candidate (issue 18)
    S.LOW_SCORE_FILTERED: frozenset({S.NEEDS_REVIEW, S.PROCESSING}),
    S.REJECTED: frozenset(),
    S.ARCHIVED: frozenset(),
}


def check_transition(old: str, new: str, *, what: str = "candidate") -> Status:
    """Return ``new`` as a Status, or raise IllegalTransition naming both states and what is allowed."""
    try:
        old_s, new_s = Status(old), Status(new)
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise IllegalTransition(f"{what}: unknown status in '{old}' -> '{new}' (known: {known})") from None
    allowed = TRANSITIONS[old_s]
    if new_s not in allowed:
        nxt = ", ".join(sorted(s.value for s in allowed)) or "none (final state)"
        raise IllegalTransition(f"{what}: status '{old_s}' cannot become '{new_s}' (allowed next: {nxt})")
    return new_s


def route(*, ppl_probability: float, has_commerce: bool, score: int) -> Status:
    if ppl_probability > 0.7:
        return Status.HIGH_PPL_RISK
    if ppl_probability >= 0.3:
        return Status.PPL_REVIEW_REQUIRED
    if not has_commerce:
        return Status.FILTERED_NO_COUPANG
    if score >= 60:
        return Status.NEEDS_REVIEW
    return Status.LOW_SCORE_FILTERED


#: Actors that are the analysis itself, not a person: ``stageflow analyze`` ("engine") and the
#: video-analysis flow ("flow"). A candidate one of them routed may be routed again by any of them.
MACHINE_ACTORS = frozenset({"engine", "flow"})


def may_reroute(status: str | None, last_actor: str | None, engine_actor: str) -> bool:
    """Whether the engine may route this candidate again: it is in a routed state and the analysis
    (this run's actor, or another machine actor: the CLI then the scheduled flow), not a person, put
    it there."""
    machine = last_actor == engine_actor or last_actor in MACHINE_ACTORS
    return status in {s.value for s in ROUTED} and machine
