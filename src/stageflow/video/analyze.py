"""The analysis engine behind ``stageflow analyze`` and the video-analysis flow: resolve inputs to
videos, fetch, dedup by (id, content sha256, config), decode, run inference, and build one JSON
record per video.

One bad video never stops the others: every per-video failure becomes that record's ``error``
(its reason in one line). Only problems that would fail every video (unknown backend, missing model)
raise before any video starts. No Prefect here; the flow wraps these functions in tasks.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stageflow.errors import BadInput, StageflowError
from stageflow.plugin_manager import StageflowPluginManager
from stageflow.stages import MediaItem
from stageflow.video.decode import VIDEO_SUFFIXES, SamplingConfig, check_file
from stageflow.video.job import Backends, DecodedJob, InferenceResult, decode_job, look, transcribe
from stageflow.video.settings import VideoConfig

RESULTS_TABLE = "video_analyses"
FEED_SUFFIXES = (".xml", ".rss", ".atom")
CHANNEL_SUFFIXES = (".toml",)

#: on_stage(video_number, total, video_id, stage) — stage is decode/transcribe/look/done/failed/cached.
StageHook = Callable[[int, int, str, str], None]


@dataclass(frozen=True)
class VideoRef:
    """One video to analyse, or an input that failed to resolve (``error`` set)."""

    id: str
    source: str
    title: str
    location: str  # a local path or a URL
    error: str | None = None


# --------------------------------------------------------------------------- inputs


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _ref(item: MediaItem) -> VideoRef:
    location = str(item.extra.get("path") or item.extra.get("media_url") or item.url)
    return VideoRef(f"{item.source}:{item.item_id}", item.source, item.title, location)


def _feed_refs(plugins: StageflowPluginManager, options: dict[str, Any], label: str) -> list[VideoRef]:
    try:
        items = plugins.build("sources", "rss", options).discover()
    except StageflowError as exc:
        return [VideoRef(label, "rss", label, label, error=str(exc))]
    return [_ref(i) for i in items]


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
        for key in ("max_age_days", "skip_shorts", "keywords", "timeout_s", "retries", "backoff_s"):
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
        if _is_url(raw):
            if Path(urlparse(raw).path).suffix.lower() in VIDEO_SUFFIXES:
                items = plugins.build("sources", "urls", {"urls": [raw]}).discover()
                refs.extend(_ref(i) for i in items)
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
                    refs.extend(_feed_refs(plugins, {**extra, **opts}, opts["feeds"][0]))
            except BadInput as exc:
                refs.append(VideoRef(raw, "channels", path.name, raw, error=str(exc)))
        else:
            refs.append(VideoRef(f"file:{path.name}", "file", path.stem, str(path)))
    return refs


# --------------------------------------------------------------------------- backends


def build_backends(plugins: StageflowPluginManager, config: VideoConfig) -> Backends:
    """Build every configured backend once (a missing model or unknown name fails here, before any
    video starts)."""
    transcriber = (
        plugins.build("transcribers", config.transcriber, config.options(config.transcriber))
        if config.transcriber
        else None
    )
    detector = (
        plugins.build("detectors", config.detector, config.options(config.detector))
        if config.detector
        else None
    )
    ocr = [plugins.build("ocr_engines", name, config.options(name)) for name in config.ocr]
    return Backends(transcriber, detector, ocr, config.language)


def config_key(config: VideoConfig) -> str:
    """What a stored result depends on: the backends, their options, sampling and language."""
    doc = config.model_dump(exclude={"clips", "analyzer"})
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sampling_of(config: VideoConfig) -> SamplingConfig:
    s = config.sampling
    return SamplingConfig(
        interval_s=s.interval_s,
        min_sharpness=s.min_sharpness,
        min_hash_distance=s.min_hash_distance,
        min_scene_diff=s.min_scene_diff,
        max_side=s.max_side,
        batch_size=s.batch_size,
    )


# --------------------------------------------------------------------------- per video


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pick_downloader(plugins: StageflowPluginManager, url: str) -> Any:
    """The first downloader that handles ``url``; third-party ones (e.g. yt-dlp) before built-ins."""
    registry = plugins.registry("downloaders")
    specs = sorted(registry.specs(), key=lambda s: s.distribution == "stageflow")
    for spec in specs:
        backend = registry.build(spec.name, None)
        if backend.can_handle(url):
            return backend
    raise BadInput(
        f"{url}: no downloader handles this URL (installed: {', '.join(registry.names()) or 'none'}); "
        "give a direct media URL or install a downloader plugin (e.g. one wrapping yt-dlp)"
    )


def acquire(ref: VideoRef, plugins: StageflowPluginManager, downloads: Path) -> Path:
    """A local file for ``ref`` (downloaded when it is a URL), checked before decoding."""
    path = (
        pick_downloader(plugins, ref.location).download(ref.location, downloads)
        if _is_url(ref.location)
        else Path(ref.location).expanduser()
    )
    check_file(path)
    return path


def empty_record(ref: VideoRef) -> dict[str, Any]:
    return {
        "id": ref.id,
        "source": ref.source,
        "title": ref.title,
        "duration_s": None,
        "frames_decoded": 0,
        "frames_kept": 0,
        "transcript": [],
        "detections": [],
        "ocr": [],
        "candidates": [],
        "error": ref.error,
    }


def result_record(ref: VideoRef, job: DecodedJob, result: InferenceResult) -> dict[str, Any]:
    """The ``--json`` record of one video (documented shape; extra detail goes to the --out files)."""
    record = empty_record(ref)
    record.update(
        duration_s=job.info.duration_s,
        frames_decoded=job.frames_decoded,
        frames_kept=job.frames_kept,
        transcript=[
            {"start": s.start, "end": s.end, "text": s.text}
            for s in (result.transcript.segments if result.transcript else ())
        ],
        detections=[
            {"t": d.t, "label": d.label, "confidence": d.confidence, "box": list(d.box)}
            for d in result.detections
        ],
        ocr=[{"t": o.t, "text": o.text, "confidence": o.confidence, "box": list(o.box)} for o in result.ocr],
    )
    return record


def _stored(store: Any, key: str) -> dict[str, Any] | None:
    if store is None:
        return None
    row = store.conn.execute(
        "SELECT data FROM records WHERE tbl = ? AND record_key = ?", [RESULTS_TABLE, key]
    ).fetchone()
    return json.loads(row[0])["record"] if row else None


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "video"


@dataclass
class AnalyzeContext:
    plugins: StageflowPluginManager
    config: VideoConfig
    backends: Backends
    out_dir: Path
    store: Any = None  # stageflow.store.Store; None: no dedup
    force: bool = False
    on_stage: StageHook | None = None


def analyze_video(ref: VideoRef, ctx: AnalyzeContext, number: int = 1, total: int = 1) -> dict[str, Any]:
    """Analyse one video; never raises for a problem with this video (it goes to ``error``)."""

    def stage(name: str) -> None:
        if ctx.on_stage is not None:
            ctx.on_stage(number, total, ref.id, name)

    if ref.error is not None:
        stage("failed")
        return empty_record(ref)
    try:
        stage("fetch")
        path = acquire(ref, ctx.plugins, ctx.out_dir / "downloads")
        sha = sha256_file(path)
        key = f"{ref.id}|{sha}|{config_key(ctx.config)}"
        cached = None if ctx.force else _stored(ctx.store, key)
        if cached is not None:
            stage("cached")
            return cached
        stage("decode")
        workdir = ctx.out_dir / "jobs" / _safe_name(f"{ref.id}-{sha[:12]}")
        job = decode_job(
            path, workdir, sampling_of(ctx.config), video_id=ref.id, source=ref.source, title=ref.title
        )
        stage("transcribe")
        transcript = transcribe(job, ctx.backends)
        stage("look")
        detections, ocr, batches, max_batch = look(job, ctx.backends, ctx.config.sampling.batch_size)
        result = InferenceResult(transcript, detections, ocr, batches, max_batch)
        record = result_record(ref, job, result)
        full = {"record": record, "sha256": sha, "job": job.to_dict(), "inference": result.to_dict()}
        (workdir / "result.json").write_text(json.dumps(full, indent=1, ensure_ascii=False), encoding="utf-8")
        if ctx.store is not None:
            ctx.store.upsert_records(RESULTS_TABLE, [{"key": key, **full}], key="key")
        stage("done")
        return record
    except StageflowError as exc:
        record = empty_record(ref)
        record["error"] = str(exc)
    except Exception as exc:  # an unexpected library failure on this video: reported, never fatal
        record = empty_record(ref)
        record["error"] = f"{type(exc).__name__}: {exc}"
    stage("failed")
    return record


def analyze(refs: Iterable[VideoRef], ctx: AnalyzeContext) -> dict[str, Any]:
    """``{"videos": [record, ...]}`` in input order; failed videos carry ``error``."""
    listed = list(refs)
    return {"videos": [analyze_video(r, ctx, n, len(listed)) for n, r in enumerate(listed, start=1)]}
