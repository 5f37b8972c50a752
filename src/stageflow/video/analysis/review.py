"""Human review decisions applied to stored candidates: the fields of the Prefect pause form
(approve / reject / send back for revision, optionally correcting the product name) and a link added
by hand to a filtered_no_coupang candidate. Every change goes through the store's status machine.

Plain functions, no Prefect: the flow builds its RunInput from ``ReviewDecision``'s fields and
calls ``apply_review``. Never changes a candidate that is not in the store.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stageflow.errors import BadInput
from stageflow.video.analysis.evidence import CommerceMatch
from stageflow.video.analysis.routing import Status

_ACTIONS = {"approve": Status.APPROVED, "reject": Status.REJECTED, "revise": Status.UNDER_REVISION}


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate_id: str
    action: Literal["approve", "reject", "revise"]
    product_name: str | None = None  # a corrected name, kept with the candidate
    note: str = ""


def _load(store: Any, candidate_id: str) -> dict[str, Any]:
    row = store.candidate(candidate_id)
    if row is None:
        raise BadInput(f"candidate {candidate_id} is not in the store: check the id")
    return row


def _save(store: Any, row: dict[str, Any], actor: str) -> None:
    data = {k: v for k, v in row.items() if k not in ("id", "status")}
    store.upsert_candidate(
        row["id"],
        video_id=row.get("video_id", ""),
        start=row["start"],
        end=row["end"],
        data=data,
        actor=actor,
    )


def apply_review(store: Any, decision: ReviewDecision, *, actor: str = "reviewer") -> str:
    """Apply one review decision; returns the new status. An illegal move raises IllegalTransition
    and changes nothing (the name correction included)."""
    row = _load(store, decision.candidate_id)
    target = _ACTIONS[decision.action]
    from stageflow.video.analysis.routing import check_transition

    check_transition(row["status"], target, what=f"candidate {decision.candidate_id}")
    if decision.product_name and decision.product_name.strip() != row.get("product_name"):
        row["product_name"] = decision.product_name.strip()
        _save(store, row, actor)
    return store.set_candidate_status(decision.candidate_id, target, actor=actor, reason=decision.note[:200])


def attach_commerce(store: Any, candidate_id: str, match: CommerceMatch, *, actor: str = "reviewer") -> str:
    """A link added by hand: store it and move filtered_no_coupang -> needs_review."""
    row = _load(store, candidate_id)
    from stageflow.video.analysis.routing import check_transition

    check_transition(row["status"], Status.NEEDS_REVIEW, what=f"candidate {candidate_id}")
    row["commerce"] = match.model_dump(mode="json")
    _save(store, row, actor)
    return store.set_candidate_status(
        candidate_id, Status.NEEDS_REVIEW, actor=actor, reason="link added by hand"
    )


def sheet_sink_options(video_config: Any) -> dict[str, Any]:
    """The options of the ``gsheets`` sink in ``[video] sinks`` (what ``review-sync`` reads back)."""
    for choice in getattr(video_config, "sinks", None) or ():
        if choice.backend == "gsheets":
            return dict(choice.options)
    raise BadInput(
        '[video] sinks has no gsheets sink: add {backend = "gsheets", options = {spreadsheet_key = "..."}} '
        "to review in a sheet"
    )


def sync_from_sheet(
    plugins: Any, options: dict[str, Any], store: Any, *, actor: str = "sheet"
) -> dict[str, Any]:
    """Build the gsheets sink and apply the statuses reviewers set in the sheet (``sink.review_sync``):
    ``{"changed": [{"id", "from", "to"}], "errors": [...], "at"}``."""
    return plugins.build("sinks", "gsheets", options).review_sync(store, actor=actor)
