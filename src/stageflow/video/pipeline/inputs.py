"""Input discovery of the video pipeline: what ``stageflow analyze`` and the video-analysis flow are
given (files, folders, feeds, channels files, media and page URLs) resolved into ``VideoRef`` records,
and the spoken language each one is transcribed in. An input that cannot be resolved becomes a ref
with ``error`` set (reported as that video's failure); the others go on.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stageflow.errors import BadInput, StageflowError
from stageflow.plugin_manager import StageflowPluginManager
from stageflow.stages import MediaItem
from stageflow.video.decode import VIDEO_SUFFIXES
from stageflow.video.pipeline.records import VideoRef
from stageflow.video.settings import VideoConfig

FEED_SUFFIXES = (".xml", ".rss", ".atom")
CHANNEL_SUFFIXES = (".toml",)


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def is_page_url(url: str) -> bool:
    """A YouTube watch/shorts/youtu.be link or an HLS playlist: one video, not a feed."""
    parsed = urlparse(url)
    host = parsed.netloc.lower().removeprefix("www.").removeprefix("m.")
    if host == "youtu.be" or parsed.path.lower().endswith(".m3u8"):
        return True
    return host == "youtube.com" and parsed.path.startswith(("/watch", "/shorts/", "/live/"))


def _ref(item: MediaItem, language: str | None = None, skip_shorts: bool = False) -> VideoRef:
    location = str(item.extra.get("path") or item.extra.get("media_url") or item.url)
    return VideoRef(
        id=f"{item.source}:{item.item_id}",
        source=item.source,
        title=item.title,
        location=location,
        channel=item.channel,
        language=language,
        duration_s=item.extra.get("duration_s"),
        skip_shorts=skip_shorts,
    )


def _feed_refs(
    plugins: StageflowPluginManager, options: dict[str, Any], label: str, language: str | None = None
) -> list[VideoRef]:
    try:
        items = plugins.build("sources", "rss", options).discover()
    except StageflowError as exc:
        return [VideoRef(id=label, source="rss", title=label, location=label, error=str(exc))]
    skip = bool(options.get("skip_shorts", True))  # the rss source's default
    return [_ref(i, language, skip) for i in items]


def spoken_language(ref: VideoRef, config: VideoConfig) -> str | None:
    """The language Whisper is told: the channels file's ``language`` for this channel, else
    ``[video.channels."<id>"] language``, else ``[video] language``; None lets Whisper detect it."""
    channel = config.channels.get(ref.channel or "") if ref.channel else None
    return ref.language or (channel.language if channel else None) or config.language


def _channels(path: Path) -> list[dict[str, Any]]:
    """A channels file: ``[[channel]]`` tables with ``feed`` and optional filters."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: not a channels file: {exc}") from None
    channels = doc.get("channel")
    if not isinstance(channels, list) or not channels:
        raise BadInput(f'{path}: a channels file needs [[channel]] tables with feed = "URL"')
    out = []
    for n, ch in enumerate(channels, start=1):
        if not isinstance(ch, dict) or "feed" not in ch:
            raise BadInput(f"{path}: channel {n} has no feed")
        opts: dict[str, Any] = {"feeds": [ch["feed"]]}
        for key in (
            "language",
            "max_age_days",
            "skip_shorts",
            "keywords",
            "timeout_s",
            "retries",
            "backoff_s",
        ):
            if key in ch:
                opts[key] = ch[key]
        out.append(opts)
    return out


def resolve_inputs(
    inputs: Sequence[str], plugins: StageflowPluginManager, feed_options: dict[str, Any] | None = None
) -> list[VideoRef]:
    """Videos named by ``inputs``: video files, folders, feed URLs/files, channels files, media URLs."""
    extra = dict(feed_options or {})
    refs: list[VideoRef] = []
    for raw in inputs:
        if is_url(raw):
            if Path(urlparse(raw).path).suffix.lower() in VIDEO_SUFFIXES:
                items = plugins.build("sources", "urls", {"urls": [raw]}).discover()
                refs.extend(_ref(i) for i in items)
            elif is_page_url(raw):  # a watch page or playlist: a downloader (yt-dlp) fetches it
                refs.append(VideoRef(id=f"url:{raw}", source="url", title="", location=raw))
            else:
                refs.extend(_feed_refs(plugins, {**extra, "feeds": [raw]}, raw))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            items = plugins.build("sources", "folder", {"path": str(path)}).discover()
            refs.extend(_ref(i) for i in items)
        elif path.suffix.lower() in FEED_SUFFIXES and path.is_file():
            refs.extend(_feed_refs(plugins, {**extra, "feeds": [str(path)]}, raw))
        elif path.suffix.lower() in CHANNEL_SUFFIXES and path.is_file():
            try:
                for opts in _channels(path):
                    language = opts.pop("language", None)
                    refs.extend(_feed_refs(plugins, {**extra, **opts}, opts["feeds"][0], language))
            except BadInput as exc:
                refs.append(
                    VideoRef(id=raw, source="channels", title=path.name, location=raw, error=str(exc))
                )
        else:
            refs.append(VideoRef(id=file_id(path), source="file", title=path.stem, location=str(path)))
    return refs


def file_id(path: Path) -> str:
    """A local file's video id: ``file:`` + the first 16 hex digits of its content's SHA-256, so two
    files with one name never share a row and a moved file keeps its results (``file:<path>`` when
    it cannot be read: the error is reported when it is fetched)."""
    try:
        return f"file:{sha256_file(path)[:16]}"
    except OSError:
        return f"file:{path}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
