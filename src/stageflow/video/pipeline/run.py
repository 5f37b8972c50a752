"""The video pipeline's one sequence: per video fetch -> lookup -> decode -> infer (transcribe, look)
-> store -> analyse; per run check -> resolve -> videos -> sinks -> notify.

Every step is called through ``call(step, *args, **kwargs)``: :func:`direct` runs the step in this
process (``stageflow analyze``); the video-analysis flow passes a dispatcher that runs the step's
Prefect task instead (``stageflow.flows.video``), so the order, dedup, error isolation and timings
live here once. One bad video never stops the others: its failure becomes the record's ``error``
(one line naming the input). No Prefect here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.errors import StageflowError
from stageflow.plugin_manager import StageflowPluginManager
from stageflow.video.pipeline import candidates as part2
from stageflow.video.pipeline import steps
from stageflow.video.pipeline.inputs import spoken_language
from stageflow.video.pipeline.records import VideoRecord, VideoRef

#: on_stage(video_number, total, video_id, stage): fetch/decode/transcribe/look/analyze, then
#: done/failed/cached.
StageHook = Callable[[int, int, str, str], None]
#: call(step, *args, **kwargs) -> the step's result.
Call = Callable[..., Any]


def direct(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a step in this process."""
    return step(*args, **kwargs)


@dataclass
class AnalyzeContext:
    """One run's settings and built backends. ``store`` None: no dedup and nothing stored (the flow
    passes None too: its tasks open their own). ``analysis`` None: candidates stay empty, unless
    ``call`` is a flow's dispatcher (its analyse task builds its own)."""

    plugins: StageflowPluginManager | None
    config: Any  # VideoConfig
    backends: Any  # job.Backends; None: the steps build their own
    out_dir: Path
    store: Any = None
    force: bool = False
    on_stage: StageHook | None = None
    analysis: part2.Analysis | None = None
    outcomes: list[part2.Outcome] = field(default_factory=list)  # one per analysed video
    call: Call = direct
    actor: str = "engine"
    analyse: bool | None = None  # run part 2; None: when ``analysis`` is given
    #: The run's notifier ([notify]): what an analyse step that builds its own backends hands their
    #: preflight (budget alerts).
    notifier: str = "log"
    notifier_options: dict[str, Any] = field(default_factory=dict)


def failure(exc: BaseException) -> str:
    """One line for a video's failure (a library's unexpected error names its type)."""
    return str(exc) if isinstance(exc, StageflowError) else f"{type(exc).__name__}: {exc}"


def analyze_video(ref: VideoRef, ctx: AnalyzeContext, number: int = 1, total: int = 1) -> VideoRecord:
    """Analyse one video; never raises for a problem with this video (it goes to ``error``)."""
    call, config, out = ctx.call, ctx.config, str(ctx.out_dir)
    timings: dict[str, float] = {}
    current: list[Any] = [None, time.perf_counter()]  # the timed stage running and when it started
    told: set[str] = set()

    def stage(name: str) -> None:
        now = time.perf_counter()
        if current[0] is not None:
            timings[current[0]] = round(timings.get(current[0], 0.0) + now - current[1], 3)
        timed = name in ("fetch", "decode", "analyze")  # transcribe/look: the infer step times them
        current[:] = [name if timed else None, now]
        told.add(name)
        if ctx.on_stage is not None:
            ctx.on_stage(number, total, ref.id, name)

    def finish(record: VideoRecord, end: str | None = None) -> VideoRecord:
        stage(end or ("failed" if record.error else "done"))
        record.timings_s = dict(timings)
        return record

    if ref.error is not None:
        return finish(VideoRecord.empty(ref))
    analysing = ctx.analysis is not None if ctx.analyse is None else ctx.analyse
    try:
        stage("fetch")
        fetched = call(steps.fetch, ref, config, out, plugins=ctx.plugins)
        ref = fetched.ref
        if fetched.short:  # the feed lacked the duration; the fetched file shows it is a Short
            record = VideoRecord.empty(ref)
            record.duration_s = fetched.duration_s
            record.skipped = (
                f"a Short ({fetched.duration_s:.1f} s <= {steps.SHORTS_MAX_S:.0f} s; skip_shorts)"
            )
            return finish(record, "skipped")
        stored = None if ctx.force else call(steps.lookup, fetched, store=ctx.store)
        if stored is not None:
            stage("cached")
            record, job = stored.record, stored.job
            record.input = ref.location
        else:
            stage("decode")
            job = call(steps.decode, fetched, config, out)
            stage("transcribe")
            inference = call(
                steps.infer,
                job,
                config,
                spoken_language(ref, config),
                backends=ctx.backends,
                on_stage=lambda name: stage(name),
            )
            if "look" not in told:  # the flow's child run cannot call back: its stages end together
                stage("look")
            timings.update(inference.timings_s)
            record = call(steps.store_result, fetched, job, inference, store=ctx.store)
        if analysing:
            stage("analyze")
            analysed = call(
                part2.analyse,
                record,
                job,
                fetched.path,
                config,
                analysis=ctx.analysis,
                store=ctx.store,
                actor=ctx.actor,
                notifier=ctx.notifier,
                notifier_options=ctx.notifier_options,
            )
            record = analysed.record
            ctx.outcomes.append(analysed.outcome)
        return finish(record, "done" if stored is not None and not record.error else None)
    except Exception as exc:  # noqa: BLE001 - one bad video never stops the others
        return finish(VideoRecord.empty(ref, failure(exc)))


def analyze_records(refs: Iterable[VideoRef], ctx: AnalyzeContext) -> list[VideoRecord]:
    listed = list(refs)
    return [analyze_video(r, ctx, n, len(listed)) for n, r in enumerate(listed, start=1)]


def analyze(refs: Iterable[VideoRef], ctx: AnalyzeContext) -> dict[str, Any]:
    """``{"videos": [record, ...]}`` (the ``--json`` document) in input order."""
    return {"videos": [r.to_dict() for r in analyze_records(refs, ctx)]}


def finish_run(
    ctx: AnalyzeContext, videos: Sequence[VideoRecord], notifier: str, notifier_options: dict[str, Any]
) -> list[str]:
    """The run's end: the extra sinks, then one summary notification. Returns the failures (each
    one line); the videos are analysed and stored whatever happens here."""
    ok_ids = [v.id for v in videos if not v.error or v.candidates]
    errors = []
    for choice in ctx.config.sinks:
        try:
            ctx.call(part2.write_sink, choice, ok_ids, plugins=ctx.plugins, store=ctx.store)
        except Exception as exc:  # noqa: BLE001 - reported after the JSON, exit 1
            errors.append(f"{choice.backend}: {exc}")
    try:
        message = part2.run_summary(videos, ctx.outcomes)
        ctx.call(part2.notify, notifier, dict(notifier_options), message, plugins=ctx.plugins)
    except Exception as exc:  # noqa: BLE001 - reported after the JSON, exit 1
        errors.append(f"notifier {notifier}: {exc}")
    return errors


def run_analysis(
    inputs: list[str],
    config: Any,
    out_dir: Path,
    *,
    force: bool = False,
    notifier: str = "log",
    notifier_options: dict[str, Any] | None = None,
    on_stage: StageHook | None = None,
) -> dict[str, Any]:
    """``stageflow analyze`` without Prefect: every backend checked before any video, then per video
    part 1 + part 2 (candidates into the store), then the extra sinks and one summary notification.
    A failing sink or notifier is reported in ``sink_errors``."""
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.store import open_store
    from stageflow.video.pipeline.inputs import resolve_inputs

    plugins = get_plugin_manager()
    options = dict(notifier_options or {})
    backends = part2.check_backends(config, notifier, options, plugins)
    refs = resolve_inputs(inputs, plugins)
    analysis = part2.build_analysis(plugins, config, notifier, options)
    store = open_store()
    try:
        ctx = AnalyzeContext(plugins, config, backends, out_dir, store, force, on_stage, analysis=analysis)
        ctx.notifier, ctx.notifier_options = notifier, options
        try:
            videos = analyze_records(refs, ctx)
        finally:
            analysis.close()
        sink_errors = finish_run(ctx, videos, notifier, options)
    finally:
        store.close()
    doc: dict[str, Any] = {"videos": [v.to_dict() for v in videos]}
    if sink_errors:
        doc["sink_errors"] = sink_errors
    return doc
