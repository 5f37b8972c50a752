"""Video flows. ``video_discovery``: source -> new items only -> sinks -> seen -> notify.
``video_analysis``: inputs -> per video decode (CPU) -> ``video_inference`` child (GPU, in-process
locally) -> record -> analyze (part 2: candidates, clips, store) ; then the extra sinks and one
summary notification; optionally (``[video] review_in_ui``) the run then pauses with a review form
for the candidates in needs_review. A failing video is recorded with its error and the others still
run.

Wiring only: the logic lives in stageflow.video (discovery, analyze, job) and
stageflow.video.analysis.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.input import RunInput
from pydantic import BaseModel, Field

from stageflow import settings
from stageflow.config import BackendChoice
from stageflow.orchestration import Progress, notify_failure, publish_markdown, publish_table
from stageflow.plugin_manager import get_plugin_manager
from stageflow.stages import Message
from stageflow.store import open_store
from stageflow.video import discovery
from stageflow.video.analysis.review import ReviewItem


class DiscoveryParams(BaseModel):
    """Parameters of the discovery flow (shown as a form in the Prefect UI)."""

    source: str = "rss"
    options: dict[str, Any] = Field(default_factory=dict)
    sinks: list[BackendChoice] = Field(default_factory=list)
    notifier: str = "log"
    notifier_options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_config(cls, config_path: str | None = None) -> DiscoveryParams:
        from pathlib import Path

        from stageflow.config import load_config

        cfg = load_config(Path(config_path) if config_path else None)
        d = cfg.discover
        return cls(
            source=d.source,
            options=d.options,
            sinks=d.sinks,
            notifier=cfg.notify.backend,
            notifier_options=cfg.notify.options,
        )


@task(name="check-backends")
def check_backends_task(params: DiscoveryParams, sinks: list[BackendChoice]) -> None:
    """Resolve and configure every backend before anything is written (unknown names fail here)."""
    plugins = get_plugin_manager()
    plugins.registry("sources").validate_config(params.source, params.options)
    for choice in sinks:
        plugins.build("sinks", choice.backend, choice.options)
    plugins.build("notifiers", params.notifier, params.notifier_options)


@task(name="discover", task_run_name="discover-{source}", retries=2, retry_delay_seconds=5)
def discover_task(source: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    return discovery.discover(get_plugin_manager(), source, options)


@task(name="select-new")
def select_new_task(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = open_store()
    try:
        return discovery.select_new(store, records)
    finally:
        store.close()


# Sinks upsert by key, so a retry or a re-run writes nothing twice. No result cache here on purpose:
# a cache keyed by the records would skip the write into a different or freshly restored store.
@task(name="write-sink", task_run_name="write-{choice.backend}", retries=2, retry_delay_seconds=5)
def write_sink_task(choice: BackendChoice, records: list[dict[str, Any]]) -> dict[str, int]:
    return discovery.write_sinks(get_plugin_manager(), [choice], records)


@task(name="mark-seen")
def mark_seen_task(records: list[dict[str, Any]]) -> int:
    store = open_store()
    try:
        return discovery.mark_seen(store, records)
    finally:
        store.close()


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


@flow(name="video-discovery", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def video_discovery(params: DiscoveryParams | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Find new videos from ``params.source``, store them and send one summary notification.

    Without ``params`` (a scheduled deployment), [discover] and [notify] of stageflow.toml apply."""
    if params is None:
        params = DiscoveryParams.from_config(config_path)
    home = settings.home()
    sinks = params.sinks or discovery.default_sinks(home)
    check_backends_task(params, sinks)
    records = discover_task(params.source, params.options)
    new = select_new_task(records)
    progress = Progress(f"writing {len(new)} new items to {len(sinks)} sinks", total=len(sinks))
    written: dict[str, int] = {}
    for choice in sinks:
        written.update(write_sink_task(choice, new))
        progress.advance()
    mark_seen_task(new)
    notify_task(params.notifier, params.notifier_options, discovery.summary_message(len(records), new))
    publish_table(
        "video-discovery-new",
        [{k: r.get(k) for k in ("id", "title", "channel", "published", "url")} for r in new],
        description=f"{len(new)} new of {len(records)} found",
    )
    publish_markdown(
        "video-discovery-summary",
        "| sink | rows |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in written.items()),
    )
    return {"found": len(records), "new": len(new), "written": written, "home": str(home)}


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

    reviewer: str = Field("", description="your name (recorded as prefect-ui:<name>)")
    decisions: list[ReviewItem] = Field(default_factory=list)


@task(name="resolve-inputs")
def resolve_inputs_task(inputs: list[str]) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from stageflow.video import analyze

    return [asdict(r) for r in analyze.resolve_inputs(inputs, get_plugin_manager())]


@task(name="check-video-backends")
def check_video_backends_task(video: dict[str, Any], notifier: str, notifier_options: dict[str, Any]) -> None:
    """Build every backend once (a missing model, an unknown analyzer or sink fails the run here,
    before any video)."""
    from stageflow.video import analyze
    from stageflow.video.settings import VideoConfig

    plugins = get_plugin_manager()
    config = VideoConfig.model_validate(video)
    analyze.check_analysis(plugins, config)
    plugins.build("notifiers", notifier, notifier_options)
    analyze.build_backends(plugins, config)


@task(name="decode", task_run_name="decode-{ref[id]}")
def decode_task(ref: dict[str, Any], video: dict[str, Any], out: str, force: bool) -> dict[str, Any]:
    """Fetch + dedup + decode one video: ``{"job", "key", "sha256", "path"}``, or ``{"cached": record,
    "job", "path"}`` when the store already has it."""
    from pathlib import Path

    from stageflow.video import analyze
    from stageflow.video.job import decode_job
    from stageflow.video.settings import VideoConfig

    config = VideoConfig.model_validate(video)
    vref = analyze.VideoRef(**ref)
    path = analyze.acquire(vref, get_plugin_manager(), Path(out) / "downloads", config)
    sha = analyze.sha256_file(path)
    key = f"{vref.id}|{sha}|{analyze.config_key(config)}"
    store = open_store()
    try:
        stored = None if force else analyze.stored_result(store, key)
    finally:
        store.close()
    if stored is not None:
        return {"cached": stored["record"], "job": stored.get("job"), "path": str(path)}
    workdir = Path(out) / "jobs" / analyze._safe_name(f"{vref.id}-{sha[:12]}")
    job = decode_job(
        path, workdir, analyze.sampling_of(config), video_id=vref.id, source=vref.source, title=vref.title
    )
    return {"job": job.to_dict(), "key": key, "sha256": sha, "path": str(path)}


@task(name="record", task_run_name="record-{ref[id]}")
def record_task(ref: dict[str, Any], decoded: dict[str, Any], inference: dict[str, Any]) -> dict[str, Any]:
    import json
    from pathlib import Path

    from stageflow.video import analyze
    from stageflow.video.job import DecodedJob, InferenceResult

    job = DecodedJob.from_dict(decoded["job"])
    result = InferenceResult.from_dict(inference)
    record = analyze.result_record(analyze.VideoRef(**ref), job, result)
    full = {"record": record, "sha256": decoded["sha256"], "job": decoded["job"], "inference": inference}
    (Path(job.workdir) / "result.json").write_text(json.dumps(full, ensure_ascii=False), encoding="utf-8")
    store = open_store()
    try:
        store.upsert_records(analyze.RESULTS_TABLE, [{"key": decoded["key"], **full}], key="key")
    finally:
        store.close()
    return record


@task(name="analyze", task_run_name="analyze-{record[id]}")
def analyze_task(
    record: dict[str, Any], job: dict[str, Any] | None, path: str, video: dict[str, Any]
) -> dict[str, Any]:
    """Part 2 for one video (candidates, clips, store); the store and the commerce client are opened
    here, in the task's thread. ``{"record", "outcome"}``."""
    from pathlib import Path

    from stageflow.video import analyze
    from stageflow.video.job import DecodedJob
    from stageflow.video.settings import VideoConfig

    config = VideoConfig.model_validate(video)
    record = dict(record)
    store = open_store()
    analysis = analyze.build_analysis(get_plugin_manager(), config)
    try:
        outcome = analyze.analyze_candidates(
            record,
            DecodedJob.from_dict(job) if job else None,
            Path(path),
            config,
            analysis,
            store=store,
            actor="flow",
        )
    finally:
        analysis.close()
        store.close()
    return {"record": record, "outcome": outcome}


# Sinks upsert by candidate id, so a retry writes nothing twice.
@task(name="write-candidates", task_run_name="write-{choice[backend]}", retries=2, retry_delay_seconds=5)
def write_candidates_task(choice: dict[str, Any], video_ids: list[str]) -> int:
    from stageflow.video import analyze
    from stageflow.video.settings import SinkChoice

    store = open_store()
    try:
        rows = analyze.sink_rows(store, video_ids)
    finally:
        store.close()
    return analyze.write_sink(get_plugin_manager(), SinkChoice.model_validate(choice), rows)


@task(name="review-queue")
def review_queue_task(video_ids: list[str]) -> list[dict[str, Any]]:
    from stageflow.video.analysis import review

    store = open_store()
    try:
        return review.review_queue(store, video_ids)
    finally:
        store.close()


@task(name="apply-review")
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
            client.set_flow_run_state(FlowRunContext.get().flow_run.id, Running(message=message), force=True)
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
    """Resolve inputs, then per video: decode (CPU) -> ``video_inference`` child (GPU) -> record ->
    analyze; then the extra sinks and one summary notification (the sqlite store is written by
    analyze). A failing video is recorded with its error; the others still run."""
    from stageflow.flows.inference import run_inference

    from stageflow.errors import StageflowError
    from stageflow.runconfig import resolve_params
    from stageflow.video import analyze
    from stageflow.video.settings import VideoConfig

    params = resolve_params(params)  # given parameters -> STAGEFLOW_CONFIG's [video]/[notify] -> defaults
    out = params.out or str(settings.home() / "video")
    config = VideoConfig.model_validate(params.video)
    check_video_backends_task(params.video, params.notifier, params.notifier_options)
    refs = resolve_inputs_task(params.inputs)
    progress = Progress(f"analysing {len(refs)} videos", total=len(refs))
    videos: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    for ref in refs:
        vref = analyze.VideoRef(**ref)
        if vref.error is not None:
            videos.append(analyze.empty_record(vref))
            progress.advance()
            continue
        try:
            decoded = decode_task(ref, params.video, out, params.force)
            if "cached" in decoded:
                record = decoded["cached"]
            else:
                inference = run_inference(decoded["job"], params.video)
                record = record_task(ref, decoded, inference)
            analysed = analyze_task(record, decoded.get("job"), decoded["path"], params.video)
            videos.append(analysed["record"])
            outcomes.append(analysed["outcome"])
        except Exception as exc:  # one bad video never stops the others
            record = analyze.empty_record(vref)
            record["error"] = str(exc) if isinstance(exc, StageflowError) else f"{type(exc).__name__}: {exc}"
            videos.append(record)
        progress.advance()
    ok_ids = [v["id"] for v in videos if not v["error"] or v["candidates"]]
    output_errors: list[str] = []
    for choice in config.sinks:
        try:
            write_candidates_task(choice.model_dump(), ok_ids)
        except Exception as exc:  # reported in the result; the videos are analysed and stored
            output_errors.append(f"{choice.backend}: {exc}")
    try:
        notify_task(params.notifier, params.notifier_options, analyze.run_summary(videos, outcomes))
    except Exception as exc:
        output_errors.append(f"notifier {params.notifier}: {exc}")
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
    publish_table(
        "video-analysis-candidates",
        [
            {"video": v["id"], **{k: c.get(k) for k in ("id", "product_name", "brand", "score", "status")}}
            | {"start": c["start"], "end": c["end"], "commerce": (c.get("commerce") or {}).get("url")}
            for v in videos
            for c in v["candidates"]
        ],
        description=f"{sum(len(v['candidates']) for v in videos)} candidates",
    )
    doc: dict[str, Any] = {"videos": videos}
    if review_report is not None:
        doc["review"] = review_report
    if output_errors:
        doc["sink_errors"] = output_errors
    return analysis_outcome(doc)


def analysis_outcome(doc: dict[str, Any]) -> Any:
    """The flow run's end: Failed (with the document as its data) when every video failed; else the
    document, with a warning artifact listing the failed videos when some did."""
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
    return doc
