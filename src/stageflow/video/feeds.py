"""Reading RSS/Atom feeds (YouTube channel feeds included) into :class:`MediaItem` s, with the
per-channel filters: maximum age, Shorts, required keywords.

Network access happens only for a feed URL the user configured; a local path is read from disk.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stageflow.errors import BadInput, JobFailed
from stageflow.stages import MediaItem


@dataclass(frozen=True)
class FeedFilter:
    max_age_days: float | None = 7.0
    skip_shorts: bool = True
    keywords: tuple[str, ...] = ()

    def accepts(self, item: MediaItem, now: datetime) -> bool:
        if self.skip_shorts and item.is_short:
            return False
        if self.max_age_days is not None and item.published is not None:
            if now - item.published > timedelta(days=self.max_age_days):
                return False
        if self.keywords:
            haystack = f"{item.title}\n{item.description}".casefold()
            if not any(k.casefold() in haystack for k in self.keywords):
                return False
        return True


def _to_dt(parsed) -> datetime | None:
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)


def read_feed_bytes(
    location: str, timeout_s: float = 20.0, retries: int = 2, backoff_s: float = 1.0
) -> bytes:
    """The raw feed: an http(s) URL fetched with httpx, anything else read as a local path.

    5xx/429 answers and connection errors are retried ``retries`` times with exponential backoff;
    other 4xx answers are reported at once."""
    if location.startswith(("http://", "https://")):
        import time

        import httpx

        attempt = 0
        while True:
            try:
                response = httpx.get(location, timeout=timeout_s, follow_redirects=True)
                if response.status_code < 500 and response.status_code != 429:
                    response.raise_for_status()
                    return response.content
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPStatusError as exc:
                raise JobFailed(f"feed {location}: HTTP {exc.response.status_code}") from None
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            attempt += 1
            if attempt > retries:
                raise JobFailed(f"feed {location}: {problem} (after {retries} retries)")
            time.sleep(backoff_s * 2 ** (attempt - 1))
    path = Path(location).expanduser()
    if not path.is_file():
        raise BadInput(f"feed {location}: no such file or URL: give a feed URL (https://...) or a file path")
    return path.read_bytes()


def _content_id(entry: Any) -> str:
    """An id for an entry with neither guid nor link: a digest of what it says (title, date,
    summary, enclosures), so distinct items stay distinct and a re-read item keeps its id."""
    import hashlib

    parts = [
        entry.get("title", ""),
        entry.get("published", "") or entry.get("updated", ""),
        entry.get("summary", ""),
        *sorted(str(e.get("href") or e.get("url") or "") for e in entry.get("enclosures") or []),
    ]
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogateescape"))
    return "content-" + digest.hexdigest()[:24]


def not_a_feed(data: bytes) -> str | None:
    """Why an answer that parsed to no entries is probably not a feed at all (empty, an HTML page:
    a login wall, an error page, a moved site), or None."""
    head = data.lstrip()[:512].lower()
    if not head:
        return "the answer is empty"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "the answer is an HTML page, not RSS/Atom"
    return None


def parse_feed(data: bytes, source: str = "rss") -> list[MediaItem]:
    """Every entry of an RSS/Atom document, newest first as the feed lists them."""
    import feedparser

    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise BadInput(f"{source}: not an RSS/Atom feed ({parsed.get('bozo_exception')})")
    if parsed.bozo:
        import xml.sax

        if isinstance(parsed.get("bozo_exception"), xml.sax.SAXParseException):
            raise BadInput(f"{source}: not an RSS/Atom feed: malformed XML ({parsed.get('bozo_exception')})")
    channel = parsed.feed.get("title")
    items = []
    for entry in parsed.entries:
        link = entry.get("link", "")
        item_id = entry.get("yt_videoid") or entry.get("id") or link or _content_id(entry)
        thumbs = entry.get("media_thumbnail") or []
        stats = entry.get("media_statistics") or {}
        extra: dict[str, object] = {"views": stats.get("views")} if stats.get("views") else {}
        # YouTube: the channel id and the number of ratings (media:starRating count) for channel stats
        channel_id = entry.get("yt_channelid") or parsed.feed.get("yt_channelid")
        if channel_id:
            extra["channel_id"] = str(channel_id)
        ratings = (entry.get("media_starrating") or {}).get("count")
        if (count := str(ratings or "")).isdigit():
            extra["ratings"] = int(count)
        media = [
            e.get("href") or e.get("url")
            for e in list(entry.get("enclosures") or []) + list(entry.get("media_content") or [])
            if str(e.get("type", "")).startswith("video/") and (e.get("href") or e.get("url"))
        ]
        if media:
            extra["media_url"] = media[0]
        durations = [
            float(e["duration"])
            for e in entry.get("media_content") or []
            if str(e.get("duration", "")).replace(".", "", 1).isdigit()
        ]
        if durations:
            extra["duration_s"] = durations[0]
        items.append(
            MediaItem(
                source=source,
                item_id=str(item_id),
                title=entry.get("title", ""),
                url=link,
                published=_to_dt(entry.get("published_parsed") or entry.get("updated_parsed")),
                channel=entry.get("author") or channel,
                thumbnail=thumbs[0].get("url") if thumbs else None,
                is_short="/shorts/" in link or (bool(durations) and durations[0] <= 60),
                description=entry.get("summary", "") or "",
                extra=extra,
            )
        )
    return items


def filter_items(
    items: Iterable[MediaItem], rule: FeedFilter, now: datetime | None = None
) -> list[MediaItem]:
    now = now or datetime.now(UTC)
    return [i for i in items if rule.accepts(i, now)]
