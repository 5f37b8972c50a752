"""Candidate routing and the status machine.

Routing (first rule that applies): PPL > 0.7 -> high_ppl_risk; 0.3 <= PPL <= 0.7 ->
ppl_review_required; no commerce match -> no_commerce_match; score >= 60 -> needs_review;
otherwise low_score_filtered.

Re-routing: a candidate the engine routed (one of ``ROUTED``, last moved by the engine) is routed
again on re-analysis through processing -> analysis_complete -> the new route; a candidate a person
moved (approved, rejected, needs_review by hand, ...) keeps its status (``may_reroute``).

Allowed transitions are listed in ``TRANSITIONS``; anything else raises IllegalTransition. The store
enforces this table on every status change (and records it in status_history). No I/O here.

Renamed statuses keep their old name as an alias wherever a status is read (``Status("old")``, a
review sheet's status column): ``filtered_no_coupang`` is ``no_commerce_match`` since #19 (store
migration 6 rewrote stored rows).
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
    NO_COMMERCE_MATCH = "no_commerce_match"
    NEEDS_REVIEW = "needs_review"
    LOW_SCORE_FILTERED = "low_score_filtered"
    APPROVED = "approved"
    REJECTED = "rejected"
    UNDER_REVISION = "under_revision"
    PUBLISHED = "published"
    ARCHIVED = "archived"

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        new = STATUS_ALIASES.get(value) if isinstance(value, str) else None
        return cls(new) if new is not None else None


#: Old status name -> its current name (accepted on input; never written).
STATUS_ALIASES: dict[str, str] = {"filtered_no_coupang": "no_commerce_match"}


def canonical_status(name: str) -> str:
    """``name`` with a renamed status's old name replaced by the current one; anything else as is."""
    return STATUS_ALIASES.get(name, name)


ROUTED = (
    Status.HIGH_PPL_RISK,
    Status.PPL_REVIEW_REQUIRED,
    Status.NO_COMMERCE_MATCH,
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
    S.NO_COMMERCE_MATCH: frozenset({S.NEEDS_REVIEW, S.PROCESSING}),  # a link added by hand
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
        return Status.NO_COMMERCE_MATCH
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
