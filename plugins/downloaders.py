"""Built-in downloader ``http``: direct media URLs (…/video.mp4) fetched with httpx, streamed, size
cap, resumable. Page URLs (YouTube watch links) are left to third-party downloaders such as a yt-dlp
plugin registered through ``register_downloaders``; stageflow itself never depends on yt-dlp."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from stageflow.hookspecs import hookimpl
from stageflow.video import VIDEO_SUFFIXES


class HttpDownloaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_bytes: int = Field(2 * 1024**3, gt=0)
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 1.0


class HttpDownloader:
    def __init__(self, config: HttpDownloaderConfig):
        self.config = config

    def can_handle(self, url: str) -> bool:
        parsed = urlparse(url)
        return parsed.scheme in ("http", "https") and Path(parsed.path).suffix.lower() in VIDEO_SUFFIXES

    def download(self, url: str, dest: Path) -> Path:
        from stageflow.video.fetch import FetchOptions, download

        c = self.config
        return download(url, dest, FetchOptions(c.max_bytes, c.timeout_s, c.retries, c.backoff_s))


@hookimpl
def register_downloaders(register):
    register(
        "http",
        HttpDownloader,
        config=HttpDownloaderConfig,
        requires=("httpx",),
        description="Direct media URLs (mp4/mov/mkv/webm) over HTTP(S): streamed, size cap, resumable",
    )
