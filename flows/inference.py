"""The GPU-side child flow ``video_inference``: a decoded job in, transcript + detections + OCR out.

Called in-process by ``video_analysis`` locally; when deployed, the parent calls it with
``run_deployment`` on the GPU work pool (operations issue). Its tasks are tagged ``gpu`` so a
concurrency limit on that tag bounds GPU use. Models load once per worker process and are reused
across videos (``stageflow.video.offline.MODELS``, keyed by backend + config). Wiring only: the tasks
wrap :func:`stageflow.video.pipeline.steps.transcribe` and :func:`~stageflow.video.pipeline.steps.look`.
"""

import time
from typing import TYPE_CHECKING, Any, cast

from prefect import flow, task

from stageflow.orchestration import notify_failure
from stageflow.stages import Transcript
from stageflow.video.pipeline import steps
from stageflow.video.pipeline.records import DecodedJob, Inference
from stageflow.video.settings import VideoConfig

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


@task(name="transcribe", tags=["gpu"], task_run_name="transcribe-{job.video_id}")
def transcribe_task(job: DecodedJob, config: VideoConfig, language: str | None) -> Transcript | None:
    return steps.transcribe(job, config, language)


@task(name="look", tags=["gpu"], task_run_name="look-{job.video_id}")
def look_task(job: DecodedJob, config: VideoConfig) -> Inference:
    """Detection and OCR over kept frames, loaded batch by batch."""
    return steps.look(job, config)


@flow(name="video-inference", log_prints=True, on_crashed=[notify_failure])  # failures surface in the parent
def video_inference(
    job: DecodedJob, video: dict[str, Any], language: str | None = None, remote: str | None = None
) -> Inference:
    """``job``: a decoded job (its workdir visible to this worker, unless ``remote`` is given);
    ``video``: the [video] config; ``language``: the spoken language (None: ``[video] language``);
    ``remote``: the URL of the job's copy on ``[video] job_storage`` (then the media is downloaded
    into a temporary directory, removed afterwards, and the result written back there). Returns the
    job's inference."""
    config = VideoConfig.model_validate(video)
    if not remote:
        result = _infer(job, config, language)
        write_result(job, result)
        return result
    import shutil
    import tempfile
    from pathlib import Path

    from stageflow.video import jobstore

    local = Path(tempfile.mkdtemp(prefix="stageflow-job-"))
    try:
        fetched = jobstore.fetch_job(remote, config.job_storage_options, local, video_id=job.video_id)
        result = _infer(fetched, config, language)
        jobstore.put_result(remote, config.job_storage_options, result)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return result


def _infer(job: DecodedJob, config: VideoConfig, language: str | None) -> Inference:
    started = time.perf_counter()
    transcript = transcribe_task(job, config, language)
    middle = time.perf_counter()
    result = look_task(job, config)
    result.transcript = transcript
    result.timings_s = {
        "transcribe": round(middle - started, 3),
        "look": round(time.perf_counter() - middle, 3),
    }
    return result


RESULT_FILE = "inference.json"


def write_result(job: DecodedJob, result: Inference) -> None:
    """Leave the result in the job's workdir: a parent that started this flow with run_deployment on
    another worker reads it from there (a volume both pools see). Atomic: temp file + rename."""
    import os
    from pathlib import Path

    workdir = Path(job.workdir)
    tmp = workdir / (RESULT_FILE + ".tmp")
    tmp.write_text(result.model_dump_json(), encoding="utf-8")
    os.replace(tmp, workdir / RESULT_FILE)


def read_result(job: DecodedJob) -> Inference:
    from pathlib import Path

    from stageflow.errors import JobFailed

    path = Path(job.workdir) / RESULT_FILE
    if not path.is_file():
        raise JobFailed(
            f"inference finished but {path} is missing: the GPU worker must see the same job directory "
            "(mount the --out directory into the gpu pool's containers at the same path, or set "
            "[video] job_storage to storage both pools reach)"
        )
    return Inference.model_validate_json(path.read_text(encoding="utf-8"))


def run_inference(job: DecodedJob, config: VideoConfig, language: str | None = None, **_: Any) -> Inference:
    """The pipeline's *infer* step in a flow: the in-process child flow by default; with ``[video]
    inference_deployment`` (e.g. "video-inference/video-inference"), a run of that deployment on its
    (GPU) work pool, the job's media on ``[video] job_storage`` when that is set (else the job
    directory must be a volume both pools see)."""
    video = config.model_dump(mode="json")
    deployment = config.inference_deployment
    if not deployment:
        return video_inference(job, video, language)
    from prefect.deployments import run_deployment

    from stageflow.errors import JobFailed
    from stageflow.video import jobstore

    options = config.job_storage_options
    remote = jobstore.upload_job(job, config.job_storage, options) if config.job_storage else None
    parameters: dict[str, Any] = {"job": job.to_dict(), "video": video, "language": language}
    if remote is not None:  # only then: a child deployed before job_storage existed still takes these
        parameters["remote"] = remote
    try:
        run = cast(  # sync_compatible: typed as a coroutine too; called here from sync code
            "FlowRun",
            run_deployment(
                deployment,
                parameters=parameters,
                timeout=float(config.inference_timeout_s or 3600),
                tags=["gpu"],
            ),
        )
        if run.state is None or not run.state.is_completed():
            state = run.state.name if run.state else "unknown"
            why = (run.state.message or "").strip().splitlines() if run.state else []
            raise JobFailed(
                f"inference deployment {deployment}: flow run {run.name} ended {state}"
                + (f": {why[0]}" if why else "")  # e.g. the child's one-line job_storage error
            )
        if remote is None:
            return read_result(job)
        result = jobstore.get_result(remote, options)
        write_result(job, result)  # the local job directory looks as it does with a shared volume
        return result
    finally:
        if remote is not None and not config.job_storage_keep:
            jobstore.remove_job(remote, options)
