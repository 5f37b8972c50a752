"""Built-in sources: ``rss`` (RSS/Atom and YouTube channel feeds), ``folder`` (local video files) and
``urls`` (direct media URLs, fetched later by a downloader).

A feed entry without guid or link gets an id derived from its content; a feed answer that is empty
or an HTML page is reported with a warning instead of a silent "found 0"."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import BadInput, MediaItem, Register, hookimpl

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


class RssSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feeds: list[str] = Field(min_length=1, description="feed URLs or file paths")
    max_age_days: float | None = 7.0
    skip_shorts: bool = True
    keywords: list[str] = Field(default_factory=list)
    timeout_s: float = 20.0
    retries: int = 2
    backoff_s: float = 1.0
    # every entry of a YouTube feed (filtered out or not) is recorded per channel in the store for
    # scoring: views, ratings, upload times (stageflow.video.channels)
    channel_stats: bool = True


class RssSource:
    def __init__(self, config: RssSourceConfig):
        self.config = config

    def discover(self) -> list[MediaItem]:
        from stageflow.video.feeds import (
            FeedFilter,
            filter_items,
            not_a_feed,
            parse_feed,
            read_feed_bytes,
        )

        rule = FeedFilter(self.config.max_age_days, self.config.skip_shorts, tuple(self.config.keywords))
        items: list[MediaItem] = []
        every: list[MediaItem] = []
        for feed in self.config.feeds:
            data = read_feed_bytes(feed, self.config.timeout_s, self.config.retries, self.config.backoff_s)
            parsed = parse_feed(data, "rss")
            why = not_a_feed(data) if not parsed else None
            if why is not None:
                logging.getLogger("stageflow.sources").warning(
                    "stageflow: warning: feed %s: %s (0 items): check the feed URL", feed, why
                )
            every.extend(parsed)
            items.extend(filter_items(parsed, rule))
        if self.config.channel_stats:
            from stageflow.video.channels import record_discovered

            record_discovered(every)
        return items


class FolderSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    recursive: bool = True


class FolderSource:
    """Local video files; the item id is the content sha256, so a renamed file is not processed twice."""

    def __init__(self, config: FolderSourceConfig):
        self.root = Path(config.path).expanduser()
        self.recursive = config.recursive

    def discover(self) -> list[MediaItem]:
        if not self.root.is_dir():
            raise BadInput(f"folder source {self.root}: not a directory: set [discover.options] path")
        pattern = "**/*" if self.recursive else "*"
        items = []
        for path in sorted(self.root.glob(pattern)):
            if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                digest = hashlib.sha256()
                with path.open("rb") as fh:
                    for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
                        digest.update(chunk)
                items.append(
                    MediaItem(
                        source="folder",
                        item_id=digest.hexdigest(),
                        title=path.stem,
                        url=path.resolve().as_uri(),
                        extra={"path": str(path), "bytes": path.stat().st_size},
                    )
                )
        return items


class UrlsSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(min_length=1, description="direct media URLs (https://.../video.mp4)")


class UrlsSource:
    """Direct media URLs; the item id is a hash of the URL (the content sha256 is checked after download)."""

    def __init__(self, config: UrlsSourceConfig):
        bad = [u for u in config.urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise BadInput(f"urls source: not an http(s) URL: {bad[0]}")
        self.urls = config.urls

    def discover(self) -> list[MediaItem]:
        from urllib.parse import urlparse

        return [
            MediaItem(
                source="urls",
                item_id=hashlib.sha256(url.encode()).hexdigest()[:20],
                title=Path(urlparse(url).path).stem or url,
                url=url,
            )
            for url in self.urls
        ]


@hookimpl
def register_sources(register: Register) -> None:
    register(
        "rss",
        RssSource,
        config=RssSourceConfig,
        requires=("feedparser",),
        description="RSS/Atom and YouTube channel feeds (age, Shorts, keyword filters)",
    )
    register(
        "folder",
        FolderSource,
        config=FolderSourceConfig,
        description="Local mp4/mov/mkv/webm files, deduplicated by content sha256",
    )
    register(
        "urls",
        UrlsSource,
        config=UrlsSourceConfig,
        description="Direct media URLs, downloaded by a downloader backend (built-in: http)",
    )
