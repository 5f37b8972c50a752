"""Per-channel statistics for the influence part of scoring (issue 6: I = .25 subscribers + .35
engagement + .25 consistency + .15 authenticity).

At discovery the ``rss`` and ``sheet-channels`` sources record what a YouTube channel feed gives
about each entry (channel id, published time, ``media:statistics views``, ``media:starRating count``)
in the store's ``channels`` / ``channel_videos`` tables (migration 4), every entry of the feed, also
the ones the filters drop (Shorts, too old): they all describe the channel. At analysis
``influencer_stats(store, video_id, config)`` turns that into the scoring inputs of the video's
channel:

- ``engagement_rate`` = sum of ratings / sum of views over the channel's recorded videos that have
  both (the feed has no comment counts; ratings stand for likes). Scoring maps it to 0..1 as rate / 0.10.
- ``consistency`` = max(0, 1 - CV) of the intervals between consecutive upload times (CV = population
  standard deviation / mean): uploads at a steady rhythm score 1, a spread as large as the mean
  interval scores 0. Needs at least 3 uploads (2 intervals).
- ``authenticity`` = the share of the channel's stored candidates (from its other videos, those that
  got a PPL probability) whose PPL probability is below 0.3, i.e. not PPL-flagged by routing.
- ``subscribers``: not in the feed; from ``[video.channels."<id>"] subscribers`` or the sheet's
  channels worksheet ``subscribers`` column (stored at discovery).

Precedence per key: ``[video.channels."<id>"]`` > what the store gives > ``[video] channel``
(the defaults; also what a video without a known channel gets). Unknown stays unknown (scores 0).

The SQL for these two tables lives here (like ``analyze.stored_result``); the schema is the store's.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from stageflow.errors import BadInput
from stageflow.stages import MediaItem

#: A candidate with at least this PPL probability is PPL-flagged (routing: ppl_review_required).
PPL_FLAG = 0.3
STATS_KEYS = ("subscribers", "engagement_rate", "consistency", "authenticity")


def _int(value: Any) -> int | None:
    text = str(value if value is not None else "").strip()
    return int(text) if text.isdigit() else None


# --------------------------------------------------------------------------- pure formulas


def engagement_rate(videos: Iterable[tuple[int | None, int | None]]) -> float | None:
    """Sum of ratings / sum of views over ``(views, ratings)`` pairs where both are known and views > 0."""
    pairs = [(v, r) for v, r in videos if v and r is not None]
    views = sum(v for v, _ in pairs)
    return sum(r for _, r in pairs) / views if views else None


def upload_consistency(published: Iterable[datetime]) -> float | None:
    """max(0, 1 - pstdev/mean) of the intervals between consecutive distinct upload times; None with
    fewer than 3 uploads (2 intervals)."""
    times = sorted(set(published))
    if len(times) < 3:
        return None
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    mean = statistics.fmean(gaps)
    return max(0.0, 1.0 - statistics.pstdev(gaps) / mean)


def authenticity(ppl_probabilities: Sequence[float]) -> float | None:
    """The share of candidates that are not PPL-flagged (probability < 0.3); None without candidates."""
    if not ppl_probabilities:
        return None
    return sum(1 for p in ppl_probabilities if p < PPL_FLAG) / len(ppl_probabilities)


# --------------------------------------------------------------------------- discovery: record


def parse_subscribers(rows: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """``{channel_id: subscribers}`` from channels-worksheet rows that have both; "120,000" is read as
    120000. A cell that is not a whole number raises BadInput naming the row (nothing recorded)."""
    out: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        raw = str(row.get("subscribers") or "").replace(",", "").replace("_", "").strip()
        if not raw:
            continue
        if not raw.isdigit():
            raise BadInput(
                f"channels worksheet row {n}: subscribers '{row.get('subscribers')}' is not a whole "
                "number: fix the cell or leave it empty"
            )
        if row.get("channel_id"):
            out[str(row["channel_id"]).strip()] = int(raw)
    return out


def record_feed(
    store: Any,
    items: Sequence[MediaItem],
    *,
    channel_titles: Mapping[str, str] | None = None,
    subscribers: Mapping[str, int] | None = None,
) -> int:
    """Record the feed entries that name their channel (YouTube feeds do) in ``channel_videos`` (views
    and ratings refreshed on every discovery) and their channels, with ``subscribers`` where given.
    Returns the entries recorded."""
    rows = [i for i in items if i.extra.get("channel_id")]
    subs = dict(subscribers or {})
    titles = dict(channel_titles or {})
    channels = {
        str(i.extra["channel_id"]): titles.get(str(i.extra["channel_id"])) or i.channel or "" for i in rows
    }
    for cid in subs:
        channels.setdefault(cid, titles.get(cid, ""))
    if not channels:
        return 0
    from stageflow.store import utc_now

    now = utc_now()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO channels (channel_id, title, subscribers, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel_id) DO UPDATE SET title = CASE WHEN excluded.title != '' THEN"
            " excluded.title ELSE channels.title END,"
            " subscribers = COALESCE(excluded.subscribers, channels.subscribers),"
            " updated_at = excluded.updated_at",
            [(cid, title, subs.get(cid), now) for cid, title in channels.items()],
        )
        conn.executemany(
            "INSERT INTO channel_videos (channel_id, video_id, published, views, ratings, seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id, video_id) DO UPDATE SET"
            " published = COALESCE(excluded.published, channel_videos.published),"
            " views = COALESCE(excluded.views, channel_videos.views),"
            " ratings = COALESCE(excluded.ratings, channel_videos.ratings), seen_at = excluded.seen_at",
            [
                (
                    str(i.extra["channel_id"]),
                    f"{i.source}:{i.item_id}",  # the video id of discovery and of `stageflow analyze`
                    i.published.isoformat() if i.published else None,
                    _int(i.extra.get("views")),
                    _int(i.extra.get("ratings")),
                    now,
                )
                for i in rows
            ],
        )
    return len(rows)


def record_discovered(
    items: Sequence[MediaItem], *, subscribers: Mapping[str, int] | None = None, store: Any = None
) -> int:
    """``record_feed`` into ``store`` or the stageflow store (opened and closed here: sources run in
    whatever thread discovers)."""
    if store is not None:
        return record_feed(store, items, subscribers=subscribers)
    from stageflow.store import open_store

    own = open_store()
    try:
        return record_feed(own, items, subscribers=subscribers)
    finally:
        own.close()


# --------------------------------------------------------------------------- analysis: read


def channel_of(store: Any, video_id: str) -> str | None:
    row = store.conn.execute(
        "SELECT channel_id FROM channel_videos WHERE video_id = ? ORDER BY seen_at DESC LIMIT 1", [video_id]
    ).fetchone()
    return None if row is None else str(row[0])


def stored_stats(store: Any, channel_id: str, *, exclude_video: str | None = None) -> dict[str, Any]:
    """The channel's stats from the store (keys of InfluencerStats, None when unknown). Authenticity
    counts the candidates of the channel's other videos (not ``exclude_video``: a video is not judged
    by its own candidates)."""
    conn = store.conn
    sub = conn.execute("SELECT subscribers FROM channels WHERE channel_id = ?", [channel_id]).fetchone()
    vids = conn.execute(
        "SELECT published, views, ratings FROM channel_videos WHERE channel_id = ?", [channel_id]
    ).fetchall()
    published = [datetime.fromisoformat(r[0]) for r in vids if r[0]]
    data = conn.execute(
        "SELECT c.data FROM candidates c JOIN channel_videos v ON v.video_id = c.video_id"
        " WHERE v.channel_id = ? AND c.video_id != ?",
        [channel_id, exclude_video or ""],
    ).fetchall()
    ppl = [
        float(d["ppl_probability"])
        for d in (json.loads(r[0]) for r in data)
        if d.get("ppl_probability") is not None
    ]
    return {
        "subscribers": None if sub is None else sub[0],
        "engagement_rate": engagement_rate((r[1], r[2]) for r in vids),
        "consistency": upload_consistency(published),
        "authenticity": authenticity(ppl),
    }


def influencer_stats(store: Any, video_id: str, config: Any) -> dict[str, Any]:
    """The scoring inputs for ``video_id``: ``[video.channels."<id>"]`` over the store's stats of the
    video's channel over ``[video] channel``. Without a store or a known channel: ``[video] channel``."""
    stats: dict[str, Any] = dict(getattr(config, "channel", None) or {})
    channel_id = channel_of(store, video_id) if store is not None else None
    if channel_id is None:
        return stats
    for key, value in stored_stats(store, channel_id, exclude_video=video_id).items():
        if value is not None:
            stats[key] = value
    override = (getattr(config, "channels", None) or {}).get(channel_id)
    if override is not None:
        stats.update(override.model_dump(exclude_none=True))
    return stats
