"""The analysis half of the video pipeline as plain functions over the typed records: analyse (part
2's engine: candidates, scores, commerce), clip (reel clips and thumbnails the engine asks for),
sinks and the run's summary message. The in-process run and the flows call the same functions.
No Prefect here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from stageflow.contracts.commerce import CommerceContext
from stageflow.contracts.ops import Message
from stageflow.errors import BadInput, StageflowError
from stageflow.plugin_manager import StageflowPluginManager, get_plugin_manager
from stageflow.video.pipeline import steps
from stageflow.video.pipeline.records import DecodedJob, VideoRecord
from stageflow.video.pipeline.steps import opened
from stageflow.video.settings import VideoConfig
from stageflow.video.store import video_store


class Outcome(BaseModel):
    """What part 2 reported for one video: failed ranges ``(start, end, error)`` and other errors."""

    video_id: str
    failed: list[tuple[float, float, str]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class Analysed(BaseModel):
    """Step *analyse*'s result: the record with its ``candidates`` (or ``error``) and the outcome."""

    record: VideoRecord
    outcome: Outcome


#: One ``candidates`` entry of ``--json`` (issue 6 item 9), in this order.
CANDIDATE_FIELDS = (
    "id", "product_name", "brand", "category_path", "start", "end", "evidence", "score", "score_band",
    "ppl_probability", "status", "commerce", "clip", "thumbnail",
)  # fmt: skip


@dataclass
class Analysis:
    """Part 2's backends for one thread: the analyzer, the commerce clients (built and made ready in
    the thread that uses them: a backend that keeps state in the store opens it in its ``preflight``)
    and the PPL patterns."""

    analyzer: Any
    commerce: Any  # the [video] commerce backends in the order they are tried (a list), one, or None
    patterns: Any

    def close(self) -> None:
        """Each commerce backend's optional ``close()`` (it releases what it opened, its store too)."""
        clients = self.commerce if isinstance(self.commerce, list) else [self.commerce]
        for client in (c for c in clients if c is not None):
            _call_optional(client, "close")


def _call_optional(backend: Any, method: str) -> None:
    """A backend contract's optional method (``preflight``, ``close``), called when it has one."""
    fn = getattr(backend, method, None)
    if callable(fn):
        fn()


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
    for name in config.commerce:
        try:
            options = config.options(name)
            # built once (missing keys fail here) and closed, never made ready: building a backend
            # opens nothing, its preflight does; the run builds and readies its own per thread
            _call_optional(plugins.build("commerce", name, options), "close")
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


def check_backends(
    config: VideoConfig, notifier: str, notifier_options: dict[str, Any], plugins: Any = None
) -> steps.Backends:
    """Every backend of the run built once: an unknown name, a missing model, bad options of the
    analyzer, commerce backend, sinks or notifier fail here, before any video starts."""
    plugins = plugins or get_plugin_manager()
    check_analysis(plugins, config)
    plugins.build("notifiers", notifier, dict(notifier_options))
    return steps.build_backends(plugins, config)


def commerce_context(
    plugins: StageflowPluginManager, notifier: str = "log", notifier_options: dict[str, Any] | None = None
) -> CommerceContext:
    """What each commerce backend's preflight gets: ``notify`` posts through the run's notifier
    (built when a message is sent, as the run's summary notification is)."""
    options = dict(notifier_options or {})

    def send(message: Message) -> None:
        plugins.notifiers.build(notifier, options).notify(message)

    return CommerceContext(notify=send)


def build_analysis(
    plugins: StageflowPluginManager,
    config: VideoConfig,
    notifier: str = "log",
    notifier_options: dict[str, Any] | None = None,
) -> Analysis:
    """Build part 2's backends in the calling thread and make the commerce backends ready: their
    optional ``preflight(context)`` (Coupang opens its store here, so a store that cannot be opened
    fails before any video, and takes the run's notifier for its budget alerts)."""
    analyzer = plugins.build("analyzers", config.analyzer, config.options(config.analyzer))
    built = Analysis(analyzer, [], None)
    context = commerce_context(plugins, notifier, notifier_options)
    try:
        for name in config.commerce:
            built.commerce.append(plugins.build("commerce", name, config.options(name)))
            preflight = getattr(built.commerce[-1], "preflight", None)
            if callable(preflight):
                preflight(context)
        built.patterns = load_patterns(config)
    except BaseException:
        built.close()  # the clients readied so far opened their stores
        raise
    return built


def evidence_boxes(record: VideoRecord, job: DecodedJob, max_side: int) -> list[tuple[float, Any]]:
    """``(t, box)`` of every per-frame OCR read and detection of ``record`` in source-video pixels
    (kept frames are scaled down to ``max_side``): what a vertical clip's crop window follows, frame
    by frame (the analysis itself reads the merged ``texts``)."""
    w, h = job.info.width or 0, job.info.height or 0
    scale = min(1.0, max_side / max(w, h)) if w and h else 1.0
    seen: list[Any] = [*record.ocr, *record.detections]  # OCR reads and detections: both have t, box
    return [(float(item.t), tuple(float(v) / scale for v in item.box)) for item in seen if item.box]


def make_clipper(
    job: DecodedJob, video: Path, config: VideoConfig, focus: Sequence[tuple[float, Any]] = ()
) -> Callable[[float, float], tuple[str, str]]:
    """Part 1's clip stage for part 2: ``(start, end) -> (clip.mp4, thumbnail.jpg)`` in the job's
    ``clips/`` dir, named by the range; an existing clip is reused (written under a temporary name,
    then renamed, so a crash never leaves a half clip behind). A vertical clip's crop follows the
    ``focus`` boxes seen inside its padded range."""
    import os

    from stageflow.video.clips import cut_clip, thumbnail

    dest = Path(job.workdir) / "clips"
    opts = config.clips
    text_times = {t for t, _ in focus}  # kept frames that showed text or objects

    def clip(start: float, end: float) -> tuple[str, str]:
        name = f"{round(start * 1000):08d}-{round(end * 1000):08d}"
        mp4, jpg = dest / f"{name}.mp4", dest / f"{name}.jpg"
        if not mp4.is_file():
            part = dest / f".{name}.part.mp4"
            lo, hi = start - opts.padding_s, end + opts.padding_s
            cut_clip(
                video,
                start,
                end,
                part,
                padding_s=opts.padding_s,
                vertical=opts.vertical,
                height=opts.height,
                focus=[(t, box) for t, box in focus if lo <= t <= hi],
            )
            os.replace(part, mp4)
        if not jpg.is_file():
            thumbnail(job, start, end, jpg, text_times)
        return str(mp4), str(jpg)

    return clip


def candidate_output(candidate: dict[str, Any]) -> dict[str, Any]:
    """Exactly the item-9 fields of a candidate (the engine's full output also has features, hooks…)."""
    return {k: candidate.get(k) for k in CANDIDATE_FIELDS}


def analyse(
    record: VideoRecord,
    job: DecodedJob | None,
    video: str | None,
    config: VideoConfig,
    analysis: Analysis | None = None,
    store: Any = None,
    actor: str = "engine",
    notifier: str = "log",
    notifier_options: dict[str, Any] | None = None,
) -> Analysed:
    """Step *analyse* (+ *clip*): part 2's engine on one part-1 record: product candidates with reel
    clips cut from ``video``, into the store. A failure sets the record's ``error``; failed ranges set
    it too (the other ranges' candidates are kept). Without ``analysis``/``store`` the step builds and
    opens its own (a Prefect task's thread), its commerce backends alerting through ``notifier``."""
    if analysis is None:
        with opened(store) as s:
            own = build_analysis(get_plugin_manager(), config, notifier, notifier_options)
            try:
                return analyse(record, job, video, config, own, s, actor)
            finally:
                own.close()
    from stageflow.video.analysis.engine import analyze_video as run_engine
    from stageflow.video.analysis.evidence import VideoEvidence
    from stageflow.video.channels import influencer_stats

    record = record.model_copy(deep=True)
    outcome = Outcome(video_id=record.id)
    if record.error:
        return Analysed(record=record, outcome=outcome)
    clipper = (
        make_clipper(job, Path(video), config, evidence_boxes(record, job, config.sampling.max_side))
        if job is not None and video is not None
        else None
    )
    try:
        result = run_engine(
            # the record's items are the evidence's own models: taken as they are, no conversion
            VideoEvidence.from_part1(dict(record), channel=influencer_stats(store, record.id, config)),
            analyzer=analysis.analyzer,
            commerce=analysis.commerce,
            store=store,
            ppl_patterns=analysis.patterns,
            clipper=clipper,
            actor=actor,
            commerce_limit=config.commerce_limit,
            # the kept frames (an analyzer that looks, e.g. gemini, sends a few of each range's)
            frames=[(f.t, str(Path(job.workdir) / f.file)) for f in job.frames] if job is not None else None,
        )
    except StageflowError as exc:
        record.error = f"analysis: {exc}"
        return Analysed(record=record, outcome=outcome)
    except Exception as exc:  # an unexpected failure in one video's analysis: reported, never fatal
        record.error = f"analysis: {type(exc).__name__}: {exc}"
        return Analysed(record=record, outcome=outcome)
    record.candidates = [candidate_output(c) for c in result.to_output()]
    outcome.failed = [(f.start, f.end, f.error) for f in result.failed]
    outcome.errors = list(result.errors)
    if result.failed:
        f = result.failed[0]
        record.error = (
            f"analysis: {len(result.failed)} range(s) failed; first {f.start:.1f}-{f.end:.1f}s: {f.error}"
        )
    return Analysed(record=record, outcome=outcome)


def sink_rows(store: Any, video_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The stored candidates of these videos (full engine output, current status) for the sinks."""
    return [row for vid in dict.fromkeys(video_ids) for row in video_store(store).candidates(video_id=vid)]


def write_sink(choice: Any, video_ids: Sequence[str], plugins: Any = None, store: Any = None) -> int:
    """Step *sink*: the stored candidates of these videos (current status) into one extra sink (table
    ``candidates``; sinks upsert by id, so a retry writes nothing twice)."""
    with opened(store) as s:
        rows = sink_rows(s, video_ids)
    backend = (plugins or get_plugin_manager()).build("sinks", choice.backend, choice.options)
    return int(backend.write("candidates", list(rows)) or 0)


def run_summary(videos: Sequence[VideoRecord], outcomes: Sequence[Outcome]) -> Any:
    """The run's notifier message. Its run key is derived from the content (videos, candidates and
    their statuses, errors), so a retried task or the same videos analysed again post nothing new."""
    from stageflow.video.analysis.engine import AnalysisResult, FailedRange, summary_message
    from stageflow.video.analysis.evidence import Candidate

    by_id = {o.video_id: o for o in outcomes}
    results = []
    for v in videos:
        out = by_id.get(v.id) or Outcome(video_id=v.id)
        cands = [Candidate.model_validate({**c, "video_id": v.id}) for c in v.candidates]
        failed = [FailedRange(*f) for f in out.failed]
        errors = list(out.errors)
        if v.error and not failed:
            errors.append(str(v.error))
        results.append(AnalysisResult(v.id, candidates=cands, failed=failed, errors=errors))
    digest = json.dumps(
        [[v.id, v.error, [[c["id"], c.get("status"), c.get("score")] for c in v.candidates]] for v in videos],
        sort_keys=True,
        default=str,
    )
    run_key = "analysis-" + hashlib.sha256(digest.encode()).hexdigest()[:12]
    return summary_message(run_key, results)


def notify(backend: str, options: dict[str, Any], message: Any, plugins: Any = None) -> None:
    """Step *notify*: one message through the configured notifier."""
    (plugins or get_plugin_manager()).build("notifiers", backend, options).notify(message)
