"""The analysis engine behind ``stageflow analyze`` and the video-analysis flow: resolve inputs to
videos, fetch, dedup by (id, content sha256, config), decode, run inference, and build one JSON
record per video; then part 2 (:mod:`stageflow.video.analysis.engine`) turns each record into
product candidates with reel clips (``analyze_candidates``), and the run ends with the extra sinks
(``write_sink``) and one summary message (``run_summary``).

One bad video never stops the others: every per-video failure becomes that record's ``error``
(its reason in one line). Only problems that would fail every video (unknown backend, missing model)
raise before any video starts. No Prefect here; the flow wraps these functions in tasks.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stageflow.errors import BadInput, StageflowError
from stageflow.plugin_manager import StageflowPluginManager
from stageflow.stages import MediaItem
from stageflow.video.decode import VIDEO_SUFFIXES, SamplingConfig, check_file
from stageflow.video.job import Backends, DecodedJob, InferenceResult, decode_job, look, transcribe
from stageflow.video.settings import ANALYSIS_KEYS, VideoConfig

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
    """What a stored result depends on: the backends, their options, sampling and language (never the
    part-2 analysis settings: they run again on every analysis)."""
    doc = config.model_dump(exclude={"clips", *ANALYSIS_KEYS})
    for name in (config.analyzer, config.commerce):
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
    )


# --------------------------------------------------------------------------- per video


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pick_downloader(plugins: StageflowPluginManager, url: str, config: VideoConfig | None = None) -> Any:
    """The first downloader that handles ``url``; third-party ones (e.g. yt-dlp) before built-ins.
    Each is built with its ``[video.<name>]`` table (``[video.http] max_bytes``)."""
    registry = plugins.registry("downloaders")
    specs = sorted(registry.specs(), key=lambda s: s.distribution == "stageflow")
    for spec in specs:
        backend = registry.build(spec.name, config.options(spec.name) if config is not None else None)
        if backend.can_handle(url):
            return backend
    raise BadInput(
        f"{url}: no downloader handles this URL (installed: {', '.join(registry.names()) or 'none'}); "
        "give a direct media URL or install a downloader plugin (e.g. one wrapping yt-dlp)"
    )


def acquire(
    ref: VideoRef, plugins: StageflowPluginManager, downloads: Path, config: VideoConfig | None = None
) -> Path:
    """A local file for ``ref`` (downloaded when it is a URL), checked before decoding."""
    path = (
        pick_downloader(plugins, ref.location, config).download(ref.location, downloads)
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


def stored_result(store: Any, key: str) -> dict[str, Any] | None:
    """The stored part-1 result ``{"record", "sha256", "job", "inference"}`` for ``key``, if any."""
    if store is None:
        return None
    row = store.conn.execute(
        "SELECT data FROM records WHERE tbl = ? AND record_key = ?", [RESULTS_TABLE, key]
    ).fetchone()
    return json.loads(row[0]) if row else None


def _stored(store: Any, key: str) -> dict[str, Any] | None:
    full = stored_result(store, key)
    return None if full is None else full["record"]


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
    analysis: Analysis | None = None  # part 2; None: candidates stay empty
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # one per analysed video


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
        path = acquire(ref, ctx.plugins, ctx.out_dir / "downloads", ctx.config)
        sha = sha256_file(path)
        key = f"{ref.id}|{sha}|{config_key(ctx.config)}"
        stored = None if ctx.force else stored_result(ctx.store, key)
        if stored is not None:
            stage("cached")
            record = stored["record"]
            if ctx.analysis is not None:
                stage("analyze")
                job = DecodedJob.from_dict(stored["job"]) if stored.get("job") else None
                ctx.outcomes.append(
                    analyze_candidates(record, job, path, ctx.config, ctx.analysis, store=ctx.store)
                )
            return record
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
        if ctx.analysis is not None:
            stage("analyze")
            ctx.outcomes.append(
                analyze_candidates(record, job, path, ctx.config, ctx.analysis, store=ctx.store)
            )
        stage("failed" if record["error"] else "done")
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


# --------------------------------------------------------------------------- part 2: candidates

#: One ``candidates`` entry of ``--json`` (issue 6 item 9), in this order.
CANDIDATE_FIELDS = (
    "id", "product_name", "brand", "category_path", "start", "end", "evidence", "score", "score_band",
    "ppl_probability", "status", "commerce", "clip", "thumbnail",
)  # fmt: skip


@dataclass
class Analysis:
    """Part 2's backends for one thread: the analyzer, the commerce client (it opens the store, so it is
    built in the thread that uses it) and the PPL patterns."""

    analyzer: Any
    commerce: Any
    patterns: Any

    def close(self) -> None:
        if self.commerce is not None and hasattr(self.commerce, "close"):
            self.commerce.close()
        store = getattr(self.commerce, "store", None)  # the client opened it (build_analysis gives none)
        if store is not None and hasattr(store, "close"):
            store.close()


def _in_video_section(where: str, exc: StageflowError) -> StageflowError:
    return type(exc)(f"[video] {where}: {exc}")


def check_analysis(plugins: StageflowPluginManager, config: VideoConfig) -> None:
    """Fail before any video (exit 2, one line naming the known backends) on an unknown analyzer,
    commerce backend or sink, or on options their config models reject."""
    from stageflow.video.analysis.evidence import InfluencerStats

    try:
        plugins.build("analyzers", config.analyzer, config.options(config.analyzer))
    except BadInput as exc:
        raise _in_video_section("analyzer", exc) from None
    if config.commerce:
        try:
            options = config.options(config.commerce)
            model = plugins.registry("commerce").validate_config(config.commerce, options)
            # built once without the store (missing keys fail here); the run builds its own per thread
            if "use_store" in type(model).model_fields:
                options = {**options, "use_store": False}
            client = plugins.build("commerce", config.commerce, options)
            if hasattr(client, "close"):
                client.close()
        except BadInput as exc:
            raise _in_video_section("commerce", exc) from None
    for n, choice in enumerate(config.sinks):
        try:
            plugins.registry("sinks").validate_config(choice.backend, choice.options)
        except BadInput as exc:
            raise _in_video_section(f"sinks[{n}]", exc) from None
    try:
        InfluencerStats.model_validate(config.channel)
    except ValueError as exc:
        raise BadInput(f"[video] channel: {str(exc).splitlines()[0]}") from None
    load_patterns(config)


def load_patterns(config: VideoConfig) -> Any:
    from stageflow.video.analysis.ppl import PplPatterns

    return PplPatterns.load(config.ppl_patterns)


def build_analysis(plugins: StageflowPluginManager, config: VideoConfig) -> Analysis:
    """Build part 2's backends in the calling thread (the commerce client opens the store here)."""
    analyzer = plugins.build("analyzers", config.analyzer, config.options(config.analyzer))
    commerce = (
        plugins.build("commerce", config.commerce, config.options(config.commerce))
        if config.commerce
        else None
    )
    return Analysis(analyzer, commerce, load_patterns(config))


def make_clipper(
    job: DecodedJob, video: Path, config: VideoConfig
) -> Callable[[float, float], tuple[str, str]]:
    """Part 1's clip stage for part 2: ``(start, end) -> (clip.mp4, thumbnail.jpg)`` in the job's
    ``clips/`` dir, named by the range; an existing clip is reused (written under a temporary name,
    then renamed, so a crash never leaves a half clip behind)."""
    import os

    from stageflow.video.clips import cut_clip, thumbnail

    dest = Path(job.workdir) / "clips"
    opts = config.clips

    def clip(start: float, end: float) -> tuple[str, str]:
        name = f"{round(start * 1000):08d}-{round(end * 1000):08d}"
        mp4, jpg = dest / f"{name}.mp4", dest / f"{name}.jpg"
        if not mp4.is_file():
            part = dest / f".{name}.part.mp4"
            cut_clip(
                video, start, end, part, padding_s=opts.padding_s, vertical=opts.vertical, height=opts.height
            )
            os.replace(part, mp4)
        if not jpg.is_file():
            thumbnail(job, start, end, jpg)
        return str(mp4), str(jpg)

    return clip


def candidate_output(candidate: dict[str, Any]) -> dict[str, Any]:
    """Exactly the item-9 fields of a candidate (the engine's full output also has features, hooks…)."""
    return {k: candidate.get(k) for k in CANDIDATE_FIELDS}


def analyze_candidates(
    record: dict[str, Any],
    job: DecodedJob | None,
    video: Path | None,
    config: VideoConfig,
    analysis: Analysis,
    *,
    store: Any = None,
    actor: str = "engine",
) -> dict[str, Any]:
    """Run part 2's engine on one part-1 record and fill its ``candidates`` (in place). A failure sets
    the record's ``error``; failed ranges set it too (the other ranges' candidates are kept). Returns
    the outcome ``{"video_id", "failed": [[start, end, error]], "errors": [...]}`` for the summary."""
    from stageflow.video.analysis.engine import analyze_video as run_engine
    from stageflow.video.analysis.evidence import VideoEvidence

    outcome: dict[str, Any] = {"video_id": record["id"], "failed": [], "errors": []}
    if record.get("error"):
        return outcome
    from stageflow.video.channels import influencer_stats

    clipper = make_clipper(job, video, config) if job is not None and video is not None else None
    try:
        result = run_engine(
            VideoEvidence.from_part1(record, channel=influencer_stats(store, record["id"], config)),
            analyzer=analysis.analyzer,
            commerce=analysis.commerce,
            store=store,
            ppl_patterns=analysis.patterns,
            clipper=clipper,
            actor=actor,
            commerce_limit=config.commerce_limit,
        )
    except StageflowError as exc:
        record["error"] = f"analysis: {exc}"
        return outcome
    except Exception as exc:  # an unexpected failure in one video's analysis: reported, never fatal
        record["error"] = f"analysis: {type(exc).__name__}: {exc}"
        return outcome
    record["candidates"] = [candidate_output(c) for c in result.to_output()]
    outcome["failed"] = [[f.start, f.end, f.error] for f in result.failed]
    outcome["errors"] = list(result.errors)
    if result.failed:
        f = result.failed[0]
        record["error"] = (
            f"analysis: {len(result.failed)} range(s) failed; first {f.start:.1f}-{f.end:.1f}s: {f.error}"
        )
    return outcome


def sink_rows(store: Any, video_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The stored candidates of these videos (full engine output, current status) for the sinks."""
    return [row for vid in dict.fromkeys(video_ids) for row in store.candidates(video_id=vid)]


def write_sink(plugins: StageflowPluginManager, choice: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Write the candidate rows to one extra sink (table ``candidates``; sinks upsert by id)."""
    return int(plugins.build("sinks", choice.backend, choice.options).write("candidates", list(rows)) or 0)


def run_summary(videos: Sequence[dict[str, Any]], outcomes: Sequence[dict[str, Any]]) -> Any:
    """The run's notifier message. Its run key is derived from the content (videos, candidates and
    their statuses, errors), so a retried task or the same videos analysed again post nothing new."""
    from stageflow.video.analysis.engine import AnalysisResult, FailedRange, summary_message
    from stageflow.video.analysis.evidence import Candidate

    by_id = {o["video_id"]: o for o in outcomes}
    results = []
    for v in videos:
        out = by_id.get(v["id"], {})
        cands = [Candidate.model_validate({**c, "video_id": v["id"]}) for c in v.get("candidates") or ()]
        failed = [FailedRange(*f) for f in out.get("failed") or ()]
        errors = list(out.get("errors") or ())
        if v.get("error") and not failed:
            errors.append(str(v["error"]))
        results.append(AnalysisResult(v["id"], candidates=cands, failed=failed, errors=errors))
    digest = json.dumps(
        [
            [v["id"], v.get("error"), [[c["id"], c.get("status"), c.get("score")] for c in v["candidates"]]]
            for v in videos
        ],
        sort_keys=True,
        default=str,
    )
    run_key = "analysis-" + hashlib.sha256(digest.encode()).hexdigest()[:12]
    return summary_message(run_key, results)


def notify(plugins: StageflowPluginManager, backend: str, options: dict[str, Any], message: Any) -> None:
    plugins.build("notifiers", backend, options).notify(message)
