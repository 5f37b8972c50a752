"""Built-in downloaders: ``http`` for direct media URLs (…/video.mp4), fetched with httpx, streamed,
size cap, resumable; ``yt-dlp`` (extra ``youtube``) for every other http(s) URL: YouTube watch
links, pages and HLS playlists, with yt-dlp's own retries, resume of ``.part`` files and size cap.

``yt-dlp`` writes ``<file>.meta.json`` beside the download with the video's title, channel and
duration from its metadata; the analysis reads it when the feed lacked them. yt-dlp is imported only
inside ``download``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import JobFailed, Register, hookimpl
from stageflow.video import VIDEO_SUFFIXES

log = logging.getLogger("stageflow.video.download")


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


class YtDlpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # at most 720p video + best audio (merged by ffmpeg when installed), else the best single file
    format: str = "bv*[height<=720]+ba/b"
    retries: int = Field(3, ge=0)
    max_bytes: int = Field(2 * 1024**3, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    progress: bool = True  # log "download <url>: NN%" lines (every 10%)


META_SUFFIX = ".meta.json"


class YtDlpDownloader:
    def __init__(self, config: YtDlpConfig):
        self.config = config

    def can_handle(self, url: str) -> bool:
        """Any http(s) URL that is not a direct media file (those go to ``http``)."""
        parsed = urlparse(url)
        return parsed.scheme in ("http", "https") and Path(parsed.path).suffix.lower() not in VIDEO_SUFFIXES

    def download(self, url: str, dest: Path) -> Path:
        import yt_dlp

        c = self.config
        dest.mkdir(parents=True, exist_ok=True)
        shown = {"step": -1}

        def progress(d: dict[str, Any]) -> None:
            total = d.get("total_bytes") or d.get("total_bytes_estimate")
            if d.get("status") == "downloading" and total and c.progress:
                step = int(10 * (d.get("downloaded_bytes") or 0) / total)
                if step > shown["step"]:
                    shown["step"] = step
                    log.info("download %s: %d%%", url, min(100, step * 10))

        opts = {
            "format": c.format,
            "outtmpl": str(dest / "%(extractor)s-%(id)s.%(ext)s"),
            "retries": c.retries,
            "fragment_retries": c.retries,
            "continuedl": True,
            "max_filesize": c.max_bytes,
            "socket_timeout": c.timeout_s,
            "noplaylist": True,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "progress_hooks": [progress],
            "logger": _QuietLogger(),
        }
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=True)
        except yt_dlp.utils.DownloadError as exc:
            reason = str(exc).removeprefix("ERROR: ").splitlines()[0]
            raise JobFailed(f"{url}: yt-dlp cannot download it: {reason}") from None
        done = [Path(d["filepath"]) for d in info.get("requested_downloads") or () if d.get("filepath")]
        if not done or not done[0].is_file():
            from stageflow.video.fetch import TooLarge

            size = info.get("filesize") or info.get("filesize_approx")
            raise TooLarge(f"{url}: {size or 'the file'} bytes is over the size cap of {c.max_bytes} bytes")
        meta = {
            "title": info.get("title") or "",
            "channel": info.get("channel") or info.get("uploader") or "",
            "channel_id": info.get("channel_id") or info.get("uploader_id") or "",
            "duration_s": info.get("duration"),
            "webpage_url": info.get("webpage_url") or url,
            "extractor": info.get("extractor_key") or "",
        }
        done[0].with_name(done[0].name + META_SUFFIX).write_text(json.dumps(meta), encoding="utf-8")
        return done[0]


class _QuietLogger:
    """yt-dlp's messages to our logger: debug/info at DEBUG, warnings at WARNING, errors raise."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.warning("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)


@hookimpl
def register_downloaders(register: Register) -> None:
    register(
        "http",
        HttpDownloader,
        config=HttpDownloaderConfig,
        requires=("httpx",),
        description="Direct media URLs (mp4/mov/mkv/webm) over HTTP(S): streamed, size cap, resumable",
    )
    register(
        "yt-dlp",
        YtDlpDownloader,
        config=YtDlpConfig,
        requires=("yt_dlp",),
        extra="youtube",
        description="yt-dlp: YouTube and other pages, HLS playlists; <=720p, retries, resume, size cap",
    )
