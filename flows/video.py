"""Video flows. ``video_discovery``: source -> new items only -> sinks -> seen -> notify.
``video_analysis``: inputs -> per video decode (CPU) -> ``video_inference`` child (GPU, in-process
locally) -> record -> analyze (part 2: candidates, clips, store) ; then the extra sinks and one
summary notification; optionally (``[video] review_in_ui``) the run then pauses with a review form
for the candidates in needs_review. A failing video is recorded with its error and the others still
run.

Wiring only: each task wraps one step of :mod:`stageflow.video.pipeline` (or of
:mod:`stageflow.video.discovery`), and the per-video sequence is the pipeline's own
(:func:`stageflow.video.pipeline.run.analyze_video`, given :func:`dispatch` as its ``call``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.input import RunInput
from pydantic import BaseModel, Field

from stageflow import settings
from stageflow.config import BackendChoice, load_config
from stageflow.orchestration import PARTIAL, Progress, notify_failure, publish_markdown, publish_table
from stageflow.plugin_manager import get_plugin_manager
from stageflow.stages import Message
from stageflow.store import open_store
from stageflow.video import discovery
from stageflow.video.analysis.review import ReviewItem
from stageflow.video.discovery import DiscoveryParams
from stageflow.video.pipeline import candidates as part2
from stageflow.video.pipeline import inputs as inputs_mod
from stageflow.video.pipeline import run, steps
from stageflow.video.pipeline.records import (
    DecodedJob,
    Fetched,
    Inference,
    StoredResult,
    VideoRecord,
    VideoRef,
)
from stageflow.video.settings import SinkChoice, VideoConfig
from stageflow.video.store import video_store


@task(name="check-backends", task_run_name="check-backends")
def check_backends_task(params: DiscoveryParams, sinks: list[BackendChoice]) -> None:
    """Resolve and configure every backend before anything is written (unknown names fail here)."""
    discovery.check_backends(params, sinks)


@task(name="discover", task_run_name="discover-{source}", retries=2, retry_delay_seconds=5)
def discover_task(source: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    return discovery.discover(source, options)


@task(name="select-new", task_run_name="select-new")
def select_new_task(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return discovery.select_new(records)


# Sinks upsert by key, so a retry or a re-run writes nothing twice. No result cache here on purpose:
# a cache keyed by the records would skip the write into a different or freshly restored store.
@task(name="write-sink", task_run_name="write-{choice.backend}", retries=2, retry_delay_seconds=5)
def write_sink_task(choice: BackendChoice, records: list[dict[str, Any]]) -> dict[str, int]:
    return discovery.write_sink(choice, records)


@task(name="mark-seen", task_run_name="mark-seen")
def mark_seen_task(records: list[dict[str, Any]]) -> int:
    return discovery.mark_seen(records)


# Keyed by the message content: a re-run after a crash does not notify twice.
@task(
    name="notify",
    task_run_name="notify-{notifier}",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=INPUTS,
    cache_expiration=timedelta(hours=6),
)
def notify_task(notifier: str, options: dict[str, Any], message: Message) -> None:
    get_plugin_manager().build("notifiers", notifier, options).notify(message)


def _writing_progress(new: Sequence[Any], sinks: Sequence[Any]) -> Callable[[], None]:
    return Progress(f"writing {len(new)} new items to {len(sinks)} sinks", total=len(sinks)).advance


@flow(name="video-discovery", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def video_discovery(params: DiscoveryParams | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Find new videos from ``params.source``, store them and send one summary notification: the
    sequence of :func:`stageflow.video.discovery.run_discovery`, each step its task (``dispatch``).

    Without ``params`` (a scheduled deployment), [discover] and [notify] of stageflow.toml apply."""
    if params is None:
        cfg = load_config(Path(config_path) if config_path else None)
        params = DiscoveryParams.from_sections(cfg.discover, cfg.notify)
    run_ = discovery.run_discovery(params, call=dispatch, on_writing=_writing_progress)
    records, new = run_.records, run_.new
    publish_table(
        "video-discovery-new",
        [{k: r.get(k) for k in ("id", "title", "channel", "published", "url")} for r in new],
        description=f"{len(new)} new of {len(records)} found",
    )
    publish_markdown(
        "video-discovery-summary",
        "| sink | rows |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in run_.written.items()),
    )
    return run_.result()


# --------------------------------------------------------------------------- video analysis


class AnalysisParams(BaseModel):
    """Parameters of the analysis flow: inputs as ``stageflow analyze`` takes them, the [video] config,
    and the notifier of [notify]."""

    inputs: list[str]
    out: str | None = None  # default: $STAGEFLOW_HOME/video
    video: dict[str, Any] = Field(default_factory=dict)
    force: bool = False
    notifier: str = "log"
    notifier_options: dict[str, Any] = Field(default_factory=dict)
    review_in_ui: bool | None = None  # None: [video] review_in_ui (default off: never blocks)


class CandidateReview(RunInput):
    """The pause form of the video-analysis run: one ``decisions`` row per candidate in needs_review
    (prefilled with "keep"), the candidates themselves in the description above the form."""

    reviewer: str = Field("", description="your name: the status history records prefect-ui:NAME")
    decisions: list[ReviewItem] = Field(default_factory=list)


@task(name="resolve-inputs", task_run_name="resolve-inputs")
def resolve_inputs_task(inputs: list[str]) -> list[VideoRef]:
    return inputs_mod.resolve_inputs(inputs, get_plugin_manager())


@task(name="check-video-backends", task_run_name="check-video-backends")
def check_video_backends_task(config: VideoConfig, notifier: str, notifier_options: dict[str, Any]) -> None:
    """Build every backend once (a missing model, an unknown analyzer or sink fails the run here,
    before any video)."""
    part2.check_backends(config, notifier, notifier_options)


@task(name="fetch", task_run_name="fetch-{ref.id}")
def fetch_task(ref: VideoRef, config: VideoConfig, out: str) -> Fetched:
    return steps.fetch(ref, config, out)


@task(name="lookup-stored", task_run_name="lookup-{fetched.ref.id}")
def lookup_task(fetched: Fetched) -> StoredResult | None:
    return steps.lookup(fetched)


@task(name="decode", task_run_name="decode-{fetched.ref.id}")
def decode_task(fetched: Fetched, config: VideoConfig, out: str) -> DecodedJob:
    return steps.decode(fetched, config, out)


@task(name="store-result", task_run_name="store-{fetched.ref.id}")
def store_task(fetched: Fetched, job: DecodedJob, inference: Inference) -> VideoRecord:
    return steps.store_result(fetched, job, inference)


@task(name="analyze", task_run_name="analyze-{record.id}")
def analyze_task(
    record: VideoRecord,
    job: DecodedJob | None,
    video: str | None,
    config: VideoConfig,
    actor: str,
    notifier: str = "log",
    notifier_options: dict[str, Any] | None = None,
) -> part2.Analysed:
    """Part 2 for one video (candidates, clips, store); the store and the commerce client are opened
    here, in the task's thread (the client's budget alerts go through the run's notifier)."""
    return part2.analyse(
        record, job, video, config, actor=actor, notifier=notifier, notifier_options=notifier_options
    )


# Sinks upsert by candidate id, so a retry writes nothing twice.
@task(name="write-candidates", task_run_name="write-{choice.backend}", retries=2, retry_delay_seconds=5)
def write_candidates_task(choice: SinkChoice, video_ids: list[str]) -> int:
    return part2.write_sink(choice, video_ids)


#: The pipeline's steps and the task that runs each in this flow (``infer``: the child flow).
TASKS: dict[Any, Any] = {
    discovery.check_backends: check_backends_task,
    discovery.discover: discover_task,
    discovery.select_new: select_new_task,
    discovery.write_sink: write_sink_task,
    discovery.mark_seen: mark_seen_task,
    discovery.notify: notify_task,
    steps.fetch: fetch_task,
    steps.lookup: lookup_task,
    steps.decode: decode_task,
    steps.store_result: store_task,
    part2.analyse: analyze_task,
    part2.write_sink: write_candidates_task,
    part2.notify: notify_task,
}
#: Arguments that stay in one process (the tasks build or open their own).
LOCAL_ARGS = ("plugins", "backends", "store", "on_stage", "analysis")


def dispatch(step: Any, *args: Any, **kwargs: Any) -> Any:
    """The ``call`` of the pipeline and of discovery: run ``step`` as its Prefect task."""
    from stageflow.flows.inference import run_inference

    kwargs = {k: v for k, v in kwargs.items() if k not in LOCAL_ARGS}
    if step is steps.infer:
        return run_inference(*args, **kwargs)
    return TASKS[step](*args, **kwargs)


class StageArtifacts:
    """A Prefect progress artifact per pipeline stage, advanced as each video finishes that stage."""

    def __init__(self, total: int) -> None:
        self.bars = {
            name: Progress(f"{name}: videos past this stage (of {total})", total=total)
            for name in steps.TIMED_STAGES
        }
        self.current: dict[str, str] = {}

    def __call__(self, number: int, total: int, video_id: str, stage: str) -> None:
        previous = self.current.pop(video_id, None)
        if previous in self.bars:
            self.bars[previous].advance()
        if stage in self.bars:
            self.current[video_id] = stage


@task(name="review-queue", task_run_name="review-queue")
def review_queue_task(video_ids: list[str]) -> list[dict[str, Any]]:
    from stageflow.video.analysis import review

    store = open_store()
    try:
        return review.review_queue(store, video_ids)
    finally:
        store.close()


@task(name="apply-review", task_run_name="apply-review")
def apply_review_task(decisions: list[dict[str, Any]], reviewer: str, offered: list[str]) -> dict[str, Any]:
    """Each decision through the status machine; one that cannot be applied is reported, the rest are."""
    from stageflow.video.analysis import review

    store = open_store()
    try:
        return review.apply_decisions(store, decisions, actor=review.review_actor(reviewer), offered=offered)
    finally:
        store.close()


def review_in_ui(video_ids: list[str], timeout_s: int, poll_s: int) -> dict[str, Any]:
    """Pause this flow run with the review form and apply the answer. Without an answer within
    ``timeout_s`` the candidates stay needs_review and the run goes on (back to Running: Prefect would
    otherwise fail a run that was paused and never resumed)."""
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from stageflow.video.analysis import review

    rows = review_queue_task(video_ids)
    if not rows:
        return {"status": "nothing to review", "offered": 0}
    offered = [r["id"] for r in rows]
    form = CandidateReview.with_initial_data(
        description=review.review_description(rows, timeout_s=timeout_s),
        decisions=review.review_items(rows),
    )
    print(f"review: {len(rows)} candidate(s) need review; waiting up to {timeout_s} s for the form")
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout_s, poll_interval=poll_s, key="candidate-review"
        )
    except FlowPauseTimeout:
        from prefect.client.orchestration import get_client
        from prefect.states import Running

        message = f"review timed out after {timeout_s} s; {len(rows)} candidate(s) stay needs_review"
        with get_client(sync_client=True) as client:
            # inside the flow, so its run context is set
            flow_run_id = FlowRunContext.get().flow_run.id  # type: ignore[union-attr]
            client.set_flow_run_state(flow_run_id, Running(message=message), force=True)
        print(f"review: {message}")
        return {"status": "timed out", "offered": len(rows), "message": message}
    decisions = [d.model_dump() for d in answer.decisions]
    report = apply_review_task(decisions, answer.reviewer, offered)
    for err in report["errors"]:
        print(f"review: not applied: {err}")
    return {
        "status": "resumed",
        "offered": len(rows),
        "reviewer": review.review_actor(answer.reviewer),
    } | report


@flow(name="video-analysis", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def video_analysis(params: AnalysisParams) -> dict[str, Any]:
    """Resolve inputs, then the pipeline per video (:mod:`stageflow.video.pipeline.run`), each step a
    task: fetch -> lookup-stored -> decode (CPU) -> ``video_inference`` child (GPU) -> store-result ->
    analyze; then the extra sinks and one summary notification. A failing video is recorded with its
    error; the others still run. Artifacts: a progress bar per stage, per-stage timings, the videos,
    the candidates (re-published after a review in the UI)."""
    from stageflow.runconfig import resolve_params

    params = resolve_params(params)  # given parameters -> STAGEFLOW_CONFIG's [video]/[notify] -> defaults
    out = Path(params.out or str(settings.home() / "video"))
    config = VideoConfig.model_validate(params.video)
    check_video_backends_task(config, params.notifier, params.notifier_options)
    refs = resolve_inputs_task(params.inputs)
    ctx = run.AnalyzeContext(
        None,
        config,
        None,
        out,
        force=params.force,
        on_stage=StageArtifacts(len(refs)),
        call=dispatch,
        actor="flow",
        analyse=True,
        notifier=params.notifier,
        notifier_options=dict(params.notifier_options),
    )
    records = run.analyze_records(refs, ctx)
    output_errors = run.finish_run(ctx, records, params.notifier, params.notifier_options)
    videos = [r.to_dict() for r in records]
    ok_ids = [v["id"] for v in videos if not v["error"] or v["candidates"]]
    publish_table(
        "video-analysis-timings",
        [
            {"video": v["id"], **{k: (v["timings_s"] or {}).get(k) for k in steps.TIMED_STAGES}}
            for v in videos
        ],
        description="wall time per stage, seconds",
    )
    review_report = None
    if config.review_in_ui if params.review_in_ui is None else params.review_in_ui:
        review_report = review_in_ui(ok_ids, config.review_timeout_s, config.review_poll_s)
        publish_table(
            "video-analysis-review",
            [
                {"id": c["id"], "from": c["from"], "to": c["to"], "error": ""}
                for c in review_report.get("changed", [])
            ]
            + [{"id": "", "from": "", "to": "", "error": e} for e in review_report.get("errors", [])],
            description=f"review in the UI: {review_report['status']}",
        )
        if review_report.get("changed"):  # the candidates artifact shows the statuses after the review
            videos = with_current_status(videos)
    publish_table(
        "video-analysis",
        [
            {k: v.get(k) for k in ("id", "title", "duration_s", "frames_decoded", "frames_kept", "error")}
            | {
                "segments": len(v["transcript"]),
                "detections": len(v["detections"]),
                "ocr": len(v["ocr"]),
                "candidates": len(v["candidates"]),
            }
            for v in videos
        ],
        description=f"{len(videos)} videos, {sum(1 for v in videos if v['error'])} failed",
    )
    publish_candidates(videos)
    doc: dict[str, Any] = {"videos": videos}
    if review_report is not None:
        doc["review"] = review_report
    if output_errors:
        doc["sink_errors"] = output_errors
    return analysis_outcome(doc)


CANDIDATES_ARTIFACT = "video-analysis-candidates"


def publish_candidates(videos: list[dict[str, Any]]) -> None:
    """The candidates table artifact (one key: a later version replaces what the UI shows)."""
    publish_table(
        CANDIDATES_ARTIFACT,
        [
            {"video": v["id"], **{k: c.get(k) for k in ("id", "product_name", "brand", "score", "status")}}
            | {"start": c["start"], "end": c["end"], "commerce": (c.get("commerce") or {}).get("url")}
            for v in videos
            for c in v["candidates"]
        ],
        description=f"{sum(len(v['candidates']) for v in videos)} candidates",
    )


def with_current_status(videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``videos`` with each candidate's status as the store has it now (after a review)."""
    store = open_store()
    try:
        status = {
            row["id"]: row.get("status")
            for v in videos
            for row in video_store(store).candidates(video_id=v["id"])
        }
    finally:
        store.close()
    return [
        {**v, "candidates": [{**c, "status": status.get(c["id"], c.get("status"))} for c in v["candidates"]]}
        for v in videos
    ]


def analysis_outcome(doc: dict[str, Any]) -> Any:
    """The flow run's end: Failed (with the document as its data) when every video failed; else the
    document, with a warning artifact listing the failed videos and a Completed state named
    "Completed with failures" (as a selective build's) when some did."""
    videos = doc["videos"]
    failed = [v for v in videos if v["error"]]
    if not failed:
        return doc
    first = failed[0]
    name = first.get("input") or first["id"]
    summary = f"{len(failed)} of {len(videos)} videos failed; first: {name}: {first['error']}"
    if len(failed) == len(videos):
        from prefect.states import Failed

        return Failed(message=summary, data=doc)
    publish_markdown(
        "video-analysis-warnings",
        "\n".join(f"- `{v.get('input') or v['id']}`: {v['error']}" for v in failed),
        description=summary,
    )
    print(f"warning: {summary}")
    from prefect.states import Completed

    return Completed(name=PARTIAL, message=summary, data=doc)
