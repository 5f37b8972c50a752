"""Human review decisions applied to stored candidates: the fields of the Prefect pause form
(approve / reject / send back for revision, optionally correcting the product name) and a link added
by hand to a no_commerce_match candidate. Every change goes through the store's status machine.

Plain functions, no Prefect: the video-analysis flow pauses with a RunInput whose ``decisions`` are
``ReviewItem`` rows (``review_items``) under ``review_description``'s markdown, and applies the answer
with ``apply_decisions``. Never changes a candidate that is not in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stageflow.errors import BadInput, IllegalTransition
from stageflow.video.analysis.evidence import CommerceMatch
from stageflow.video.analysis.routing import Status
from stageflow.video.store import video_store

_ACTIONS = {"approve": Status.APPROVED, "reject": Status.REJECTED, "revise": Status.UNDER_REVISION}


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate_id: str
    action: Literal["approve", "reject", "revise"]
    product_name: str | None = None  # a corrected name, kept with the candidate
    note: str = ""


def _load(store: Any, candidate_id: str) -> dict[str, Any]:
    row = video_store(store).candidate(candidate_id)
    if row is None:
        raise BadInput(f"candidate {candidate_id} is not in the store: check the id")
    return row


def _save(store: Any, row: dict[str, Any], actor: str) -> None:
    data = {k: v for k, v in row.items() if k not in ("id", "status")}
    video_store(store).upsert_candidate(
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
    return video_store(store).set_candidate_status(
        decision.candidate_id, target, actor=actor, reason=decision.note[:200]
    )


def attach_commerce(store: Any, candidate_id: str, match: CommerceMatch, *, actor: str = "reviewer") -> str:
    """A link added by hand: store it and move no_commerce_match -> needs_review."""
    row = _load(store, candidate_id)
    from stageflow.video.analysis.routing import check_transition

    check_transition(row["status"], Status.NEEDS_REVIEW, what=f"candidate {candidate_id}")
    row["commerce"] = match.model_dump(mode="json")
    _save(store, row, actor)
    return video_store(store).set_candidate_status(
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


# --------------------------------------------------------------------------- review in the Prefect UI

#: The form's actions; "keep" leaves the candidate in needs_review (the prefilled choice, so a reviewer
#: who submits without looking changes nothing).
FormAction = Literal["keep", "approve", "reject", "revise"]


class ReviewItem(BaseModel):
    """One candidate's row in the Prefect pause form (a list of these is the form's ``decisions``)."""

    model_config = ConfigDict(extra="forbid")
    candidate_id: str = Field(description="the candidate, as listed in the description")
    label: str = Field("", description="product / brand / score, for orientation only (not applied)")
    action: FormAction = Field("keep", description="keep (decide later), approve, reject or revise")
    # a plain text box in the UI (str | None renders as a type switch); empty keeps the stored name
    product_name: str = Field("", description="a corrected product name (empty: keep it)")
    note: str = Field("", description="why (kept in the status history)")


def review_queue(store: Any, video_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The stored candidates of these videos that are in needs_review, in video and time order."""
    return [
        row
        for vid in dict.fromkeys(video_ids)
        for row in video_store(store).candidates(video_id=vid, status=Status.NEEDS_REVIEW.value)
    ]


def _label(row: Mapping[str, Any]) -> str:
    brand = row.get("brand") or ""
    name = row.get("product_name") or ""
    return f"{name} ({brand}, score {row.get('score')})" if brand else f"{name} (score {row.get('score')})"


def review_items(rows: Iterable[Mapping[str, Any]]) -> list[ReviewItem]:
    """The form's prefilled rows: one per candidate, action "keep"."""
    return [ReviewItem(candidate_id=row["id"], label=_label(row)) for row in rows]


def _cell(value: Any) -> str:
    return str(value if value not in (None, "") else "–").replace("|", "\\|").replace("\n", " ")


def review_description(rows: Iterable[Mapping[str, Any]], *, timeout_s: int | None = None) -> str:
    """Markdown shown above the pause form: one table row per candidate (id, product, brand, score,
    PPL, commerce link, clip path) and how to answer."""
    rows = list(rows)
    lines = [
        f"## {len(rows)} candidate(s) need review",
        "",
        "| id | product | brand | score | PPL | commerce | clip |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        link = (row.get("commerce") or {}).get("url")
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    f"`{row['id']}`",
                    row.get("product_name"),
                    row.get("brand"),
                    f"{row.get('score')} ({row.get('score_band')})",
                    f"{float(row.get('ppl_probability') or 0.0):.2f}",
                    f"[link]({link})" if link else None,
                    f"`{row['clip']}`" if row.get("clip") else None,
                )
            )
            + " |"
        )
    lines += [
        "",
        "For each row of **decisions** pick an action: *approve*, *reject*, *revise* (back to the "
        "editor) or *keep* (decide later; stays needs_review). Type a corrected **product name** to "
        "replace the detected one. Your **reviewer** name is recorded as `prefect-ui:<name>`.",
    ]
    if timeout_s:
        lines.append(f"Without an answer within {timeout_s} s the run completes and they stay needs_review.")
    return "\n".join(lines)


def review_actor(reviewer: str | None) -> str:
    """The status_history actor of a decision made in the Prefect UI."""
    name = " ".join((reviewer or "").split())[:60]
    return f"prefect-ui:{name or 'reviewer'}"


def apply_decisions(
    store: Any,
    items: Iterable[ReviewItem | Mapping[str, Any]],
    *,
    actor: str,
    offered: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Apply the form's decisions one by one through the status machine. A decision that cannot be
    applied (an illegal transition, say because the candidate was decided in the sheet meanwhile; an
    id that was not offered for review) is reported in ``errors`` and changes nothing for that
    candidate; the others are applied. "keep" changes no status (a corrected name is still saved).

    Returns ``{"changed": [{"id", "from", "to", "product_name"}], "renamed": [id], "kept": [id],
    "errors": ["<id>: <why>"]}``."""
    allowed = None if offered is None else set(offered)
    report: dict[str, Any] = {"changed": [], "renamed": [], "kept": [], "errors": []}
    for raw in items:
        item = raw if isinstance(raw, ReviewItem) else ReviewItem.model_validate(raw)
        cid = item.candidate_id
        if allowed is not None and cid not in allowed:
            report["errors"].append(f"{cid}: not among the candidates offered for review; nothing applied")
            continue
        name = (item.product_name or "").strip() or None
        try:
            if item.action == "keep":
                row = _load(store, cid)
                if name and name != row.get("product_name"):
                    row["product_name"] = name
                    _save(store, row, actor)
                    report["renamed"].append(cid)
                report["kept"].append(cid)
                continue
            before = _load(store, cid)
            decision = ReviewDecision(candidate_id=cid, action=item.action, product_name=name, note=item.note)
            new = apply_review(store, decision, actor=actor)
        except (IllegalTransition, BadInput) as exc:
            report["errors"].append(f"{cid}: {exc}")
            continue
        if name and name != before.get("product_name"):
            report["renamed"].append(cid)
        report["changed"].append(
            {
                "id": cid,
                "from": before["status"],
                "to": new,
                "product_name": name or before.get("product_name"),
            }
        )
    return report
