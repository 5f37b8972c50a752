"""The GPU-side child flow ``video_inference``: a decoded job in, transcript + detections + OCR out.

Called in-process by ``video_analysis`` locally; when deployed, the parent calls it with
``run_deployment`` on the GPU work pool (operations issue). Its tasks are tagged ``gpu`` so a
concurrency limit on that tag bounds GPU use. Models load once per worker process and are reused
across videos (``stageflow.video.offline.MODELS``, keyed by backend + config). Wiring only: the logic
is in :mod:`stageflow.video.job`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from stageflow.orchestration import notify_failure
from stageflow.plugin_manager import get_plugin_manager
from stageflow.video import analyze
from stageflow.video.job import DecodedJob, InferenceResult, look, transcribe
from stageflow.video.settings import VideoConfig


def _backends(video: dict[str, Any]) -> tuple[Any, VideoConfig]:
    config = VideoConfig.model_validate(video)
    return analyze.build_backends(get_plugin_manager(), config), config


@task(name="transcribe", tags=["gpu"], task_run_name="transcribe-{job[video_id]}")
def transcribe_task(job: dict[str, Any], video: dict[str, Any]) -> dict[str, Any] | None:
    backends, _ = _backends(video)
    transcript = transcribe(DecodedJob.from_dict(job), backends)
    return None if transcript is None else InferenceResult(transcript, [], []).to_dict()["transcript"]


@task(name="look", tags=["gpu"], task_run_name="look-{job[video_id]}")
def look_task(job: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """Detection and OCR over kept frames, loaded batch by batch."""
    backends, config = _backends(video)
    detections, ocr, batches, max_batch = look(
        DecodedJob.from_dict(job), backends, config.sampling.batch_size
    )
    return InferenceResult(None, detections, ocr, batches, max_batch).to_dict()


@flow(name="video-inference", log_prints=True, on_crashed=[notify_failure])  # failures surface in the parent
def video_inference(job: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """``job``: a DecodedJob record (its workdir visible to this worker); ``video``: the [video] config.
    Returns an InferenceResult record."""
    transcript = transcribe_task(job, video)
    looked = look_task(job, video)
    result = {**looked, "transcript": transcript}
    write_result(job, result)
    return result


RESULT_FILE = "inference.json"


def write_result(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Leave the result in the job's workdir (a volume both pools see): a parent that started this
    flow with run_deployment on another worker reads it from there. Atomic: temp file + rename."""
    import json
    import os
    from pathlib import Path

    workdir = Path(job["workdir"])
    tmp = workdir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
    os.replace(tmp, workdir / RESULT_FILE)


def read_result(job: dict[str, Any]) -> dict[str, Any]:
    import json
    from pathlib import Path

    from stageflow.errors import JobFailed

    path = Path(job["workdir"]) / RESULT_FILE
    if not path.is_file():
        raise JobFailed(
            f"inference finished but {path} is missing: the GPU worker must see the same job directory "
            "(mount the --out directory into the gpu pool's containers at the same path)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def run_inference(job: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """In-process child flow by default; with ``[video] inference_deployment`` (e.g.
    "video-inference/video-inference"), a run of that deployment on its (GPU) work pool."""
    deployment = video.get("inference_deployment") or ""
    if not deployment:
        return video_inference(job, video)
    from prefect.deployments import run_deployment

    from stageflow.errors import JobFailed

    run = run_deployment(
        deployment,
        parameters={"job": job, "video": video},
        timeout=float(video.get("inference_timeout_s") or 3600),
        tags=["gpu"],
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise JobFailed(f"inference deployment {deployment}: flow run {run.name} ended {state}")
    return read_result(job)
