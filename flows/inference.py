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
    return {**looked, "transcript": transcript}
