"""The media steps of the video pipeline as plain functions over the typed records: fetch, lookup
(dedup against the store), decode (+ sampling), transcribe, look (detect + OCR), infer (transcribe +
look, timed), store. The in-process run (:mod:`.run`) calls them directly; the flows wrap the same
functions as Prefect tasks. Arguments that cannot cross a task boundary (``plugins``, ``backends``,
``store``, ``on_stage``) are optional: without them a step builds or opens its own.
No Prefect here.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stageflow.errors import BadInput
from stageflow.plugin_manager import StageflowPluginManager, get_plugin_manager
from stageflow.stages import Transcript
from stageflow.video import job as media
from stageflow.video.decode import SamplingConfig, check_file
from stageflow.video.job import Backends
from stageflow.video.pipeline.inputs import is_url, sha256_file
from stageflow.video.pipeline.records import (
    DecodedJob,
    Fetched,
    Inference,
    StoredResult,
    VideoRecord,
    VideoRef,
)
from stageflow.video.regions import spans
from stageflow.video.settings import ANALYSIS_KEYS, TRANSPORT_KEYS, VideoConfig

RESULTS_TABLE = "video_analyses"
SHORTS_MAX_S = 60.0  # a video this short from a feed that skips Shorts is one (as the feed filter)
#: Stages whose wall time ``--json`` reports per video in ``timings_s``.
TIMED_STAGES = ("fetch", "decode", "transcribe", "look", "analyze")


@contextmanager
def opened(store: Any = None) -> Iterator[Any]:
    """``store`` itself, or the configured store opened (and closed) for this step."""
    if store is not None:
        yield store
        return
    from stageflow.store import open_store

    own = open_store()
    try:
        yield own
    finally:
        own.close()


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
    regions = None
    if config.ocr and config.ocr_regions:
        regions = next((e for e in ocr if hasattr(e, "detect_boxes")), None) or plugins.build(
            "ocr_engines", "rapidocr", config.options("rapidocr")
        )
    return Backends(transcriber, detector, ocr, config.language, regions)


def config_key(config: VideoConfig) -> str:
    """What a stored result depends on: the backends, their options, sampling and language (never the
    part-2 analysis settings: they run again on every analysis)."""
    doc = config.model_dump(exclude={"clips", *ANALYSIS_KEYS, *TRANSPORT_KEYS})
    for name in (config.analyzer, *config.commerce):
        if name and name not in (config.transcriber, config.detector, *config.ocr):
            doc.pop(name, None)
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
        evidence_interval_s=s.evidence_interval_s,
    )


# --------------------------------------------------------------------------- fetch


def pick_downloader(
    plugins: StageflowPluginManager, url: str, options: Callable[[str], dict[str, Any]] | None = None
) -> Any:
    """The first installed downloader that handles ``url``: third-party ones before built-ins, and
    of the built-ins ``http`` (direct media files) before ``yt-dlp`` (pages, YouTube, HLS).
    ``options(name)`` gives a downloader's ``[video.<name>]`` table."""
    registry = plugins.registry("downloaders")
    specs = sorted(registry.specs(), key=lambda s: s.distribution == "stageflow")
    missing = []
    for spec in specs:
        if spec.missing():
            missing.append(
                f"{spec.name} (pip install 'stageflow[{spec.extra}]')" if spec.extra else spec.name
            )
            continue
        backend = registry.build(spec.name, options(spec.name) if options else None)
        if backend.can_handle(url):
            return backend
    hint = f"; not installed: {', '.join(missing)}" if missing else ""
    raise BadInput(
        f"{url}: no downloader handles this URL (installed: {', '.join(registry.names()) or 'none'}{hint}); "
        "give a direct media URL or install a downloader plugin"
    )


def read_download_meta(path: Path) -> dict[str, Any]:
    """What a downloader recorded about ``path`` (``<file>.meta.json``: title, channel, duration_s)."""
    meta = path.with_name(path.name + ".meta.json")
    try:
        return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}


def acquire(
    ref: VideoRef, plugins: StageflowPluginManager, downloads: Path, config: VideoConfig | None = None
) -> Path:
    """A local file for ``ref`` (downloaded when it is a URL), checked before decoding."""
    path = (
        pick_downloader(plugins, ref.location, config.options if config else None).download(
            ref.location, downloads
        )
        if is_url(ref.location)
        else Path(ref.location).expanduser()
    )
    check_file(path)
    return path


def fetch(ref: VideoRef, config: VideoConfig, out: str, plugins: Any = None) -> Fetched:
    """Step *fetch*: the video on local disk (downloaded into ``<out>/downloads`` when a URL), its
    ref completed from the downloader's metadata, its content hash and store key."""
    path = acquire(ref, plugins or get_plugin_manager(), Path(out) / "downloads", config)
    meta = read_download_meta(path)
    if meta:  # what the downloader learnt (yt-dlp's metadata) fills what the input lacked
        title = ref.title if ref.title and ref.title != ref.location else meta.get("title") or ref.title
        ref = ref.model_copy(
            update={"title": title, "channel": ref.channel or meta.get("channel_id") or None}
        )
    sha = sha256_file(path)
    duration = ref.duration_s if ref.duration_s is not None else meta.get("duration_s")
    if not isinstance(duration, int | float) and ref.skip_shorts:  # the feed lacked it: the file's own
        from stageflow.video.decode import probe

        duration = probe(path).duration_s
    duration = float(duration) if isinstance(duration, int | float) else None
    return Fetched(
        ref=ref,
        path=str(path),
        sha256=sha,
        key=f"{ref.id}|{sha}|{config_key(config)}",
        duration_s=duration,
        short=ref.skip_shorts and duration is not None and 0 < duration <= SHORTS_MAX_S,
    )


def stored_result(store: Any, key: str) -> StoredResult | None:
    """The stored part-1 result for ``key``, if any."""
    if store is None:
        return None
    row = store.conn.execute(
        "SELECT data FROM records WHERE tbl = ? AND record_key = ?", [RESULTS_TABLE, key]
    ).fetchone()
    return StoredResult.model_validate_json(row[0]) if row else None


def lookup(fetched: Fetched, store: Any = None) -> StoredResult | None:
    """Step *lookup*: this video's stored result (same content, same config), if the store has it."""
    with opened(store) as s:
        return stored_result(s, fetched.key)


# --------------------------------------------------------------------------- decode, inference


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "video"


def decode(fetched: Fetched, config: VideoConfig, out: str) -> DecodedJob:
    """Step *decode*: audio and the sampled frames (scene changes + steady evidence frames) into the
    job directory ``<out>/jobs/<id>-<sha>``."""
    ref = fetched.ref
    workdir = Path(out) / "jobs" / _safe_name(f"{ref.id}-{fetched.sha256[:12]}")
    return media.decode_job(
        Path(fetched.path),
        workdir,
        sampling_of(config),
        video_id=ref.id,
        source=ref.source,
        title=ref.title,
    )


def transcribe(
    job: DecodedJob, config: VideoConfig, language: str | None = None, backends: Backends | None = None
) -> Transcript | None:
    """Step *transcribe*: the job's transcript in ``language`` (default ``[video] language``)."""
    backends = backends or build_backends(get_plugin_manager(), config)
    return media.transcribe(job, backends, language)


def look(
    job: DecodedJob,
    config: VideoConfig,
    backends: Backends | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Inference:
    """Steps *detect* and *OCR* over the kept frames (batch by batch), OCR folded into ``texts``."""
    backends = backends or build_backends(get_plugin_manager(), config)
    detections, ocr, batches, max_batch = media.look(job, backends, config.sampling.batch_size, on_batch)
    return Inference(detections=detections, ocr=ocr, batches=batches, max_batch=max_batch, texts=spans(ocr))


def infer(
    job: DecodedJob,
    config: VideoConfig,
    language: str | None = None,
    backends: Backends | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Inference:
    """Transcribe, then look; each stage's wall time in ``timings_s``."""
    backends = backends or build_backends(get_plugin_manager(), config)
    started = time.perf_counter()
    transcript = transcribe(job, config, language, backends)
    middle = time.perf_counter()
    if on_stage is not None:
        on_stage("look")
    result = look(job, config, backends)
    result.transcript = transcript
    result.timings_s = {
        "transcribe": round(middle - started, 3),
        "look": round(time.perf_counter() - middle, 3),
    }
    return result


def store_result(fetched: Fetched, job: DecodedJob, inference: Inference, store: Any = None) -> VideoRecord:
    """Step *store* (part 1): the video's record, kept in its job dir (``result.json``) and in the
    store under its key, so the same content with the same config is never analysed twice."""
    record = VideoRecord.of(fetched.ref, job, inference)
    full = StoredResult(record=record, sha256=fetched.sha256, job=job, inference=inference)
    (Path(job.workdir) / "result.json").write_text(full.dump(), encoding="utf-8")
    with opened(store) as s:
        s.upsert_records(RESULTS_TABLE, [{"key": fetched.key, **full.to_dict()}], key="key")
    return record
