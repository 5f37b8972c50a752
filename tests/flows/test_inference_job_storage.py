"""`[video] job_storage`: the parent video flow hands inference to a deployment served by a separate
process that shares no directory with it. The job's media goes through a local S3-compatible server
(moto's server mode on 127.0.0.1): the parent uploads it and then deletes its own copy of the frames
and audio, the child (its own STAGEFLOW_HOME, cwd and TMPDIR) downloads them, runs OCR and writes the
result back, and the parent reads it from there and removes the remote copy. A child that lacks an
environment variable the options name (``key_env``) fails in one line, which the parent's error
carries; that run's upload is removed too, and no secret is in any run's parameters."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

SERVE = (
    "from stageflow.flows.inference import video_inference\n"
    "video_inference.serve(name='video-inference', print_starting_message=False)\n"
)
SECRET = "s3cret-value-never-in-run-parameters"


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's buckets are process-wide state shared by every in-process server: start empty
    httpx.post(f"http://{host}:{port}/moto-api/reset", timeout=60).raise_for_status()
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=f"http://{host}:{port}")
    fs.mkdir("jobs")
    yield f"http://{host}:{port}", creds, fs
    server.stop()


def test_media_reaches_the_child_through_s3_only(tmp_path, s3, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from stageflow.flows.video import AnalysisParams, video_analysis

    from stageflow.video import jobstore
    from stageflow.video import synthetic as s

    endpoint, creds, fs = s3
    uploaded: list[str] = []
    real_upload = jobstore.upload_job

    def upload_then_drop_local_media(job, storage, options):
        remote = real_upload(job, storage, options)
        uploaded.append(remote)
        for name in jobstore.media_files(job):  # the child can only have them from S3 now
            (Path(job.workdir) / name).unlink()
        return remote

    monkeypatch.setattr(jobstore, "upload_job", upload_then_drop_local_media)
    clip = s.make_video(
        tmp_path / "clip.mp4", [s.Scene(1.0, "HELLO"), s.Scene(1.0, "THANKS", (230, 230, 255))]
    )
    child = tmp_path / "child"
    (child / "tmp").mkdir(parents=True)
    env = {
        **os.environ,
        **creds,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "STAGEFLOW_HOME": str(child / "home"),
        "TMPDIR": str(child / "tmp"),
    }
    served = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        env=env,
        cwd=child,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    deployment = client.read_deployment_by_name("video-inference/video-inference")
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, "video-inference was not served in 90 s"
                    time.sleep(1)
            # the session's server may hold runs of this deployment name from other tests: not ours
            earlier = {
                r.id
                for r in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
            }
        video = {
            "transcriber": "",
            "detector": "",
            "ocr": ["rapidocr"],
            "inference_deployment": "video-inference/video-inference",
            "inference_timeout_s": 300,
            "job_storage": "s3://jobs/stageflow",
            "job_storage_options": {"endpoint_url": endpoint},
        }
        doc = video_analysis(AnalysisParams(inputs=[str(clip)], out=str(tmp_path / "out"), video=video))
        # A worker without the variables the options name fails in one line, which reaches the parent.
        monkeypatch.setenv("STAGEFLOW_TEST_JOBS_KEY", "testing")  # the parent has them, the child not
        monkeypatch.setenv("STAGEFLOW_TEST_JOBS_SECRET", SECRET)
        named = {"key_env": "STAGEFLOW_TEST_JOBS_KEY", "secret_env": "STAGEFLOW_TEST_JOBS_SECRET"}
        misconfigured = {**video, "job_storage_options": {**video["job_storage_options"], **named}}
        failed = video_analysis(
            AnalysisParams(inputs=[str(clip)], out=str(tmp_path / "out2"), video=misconfigured, force=True),
            return_state=True,
        )
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=30)
    [record] = doc["videos"]
    assert record["error"] is None
    assert [o["text"] for o in record["ocr"]] == ["HELLO", "THANKS"]  # read from the downloaded frames
    remote = uploaded[0]
    assert remote.startswith("s3://jobs/stageflow/")
    assert failed.is_failed()
    [second] = failed.result(raise_on_failure=False)["videos"]
    assert second["error"].endswith(
        "[video.job_storage_options] key_env: environment variable 'STAGEFLOW_TEST_JOBS_KEY' is "
        "not set on this worker"
    ), second["error"]
    assert "inference deployment video-inference/video-inference: flow run" in second["error"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    runs = [r for r in runs if r.id not in earlier]
    assert sorted(r.state.type.value for r in runs) == ["COMPLETED", "FAILED"]
    [done] = [r for r in runs if r.state.is_completed()]
    assert done.parameters["remote"] == remote
    assert not any(SECRET in json.dumps(r.parameters, default=str) for r in runs)
    assert fs.find("jobs") == []  # the failed run's upload is removed too
    [workdir] = (tmp_path / "out" / "jobs").iterdir()
    assert (workdir / "inference.json").is_file()  # the parent's local copy of the result
    assert not list(workdir.glob("frame-*.jpg"))  # (deleted after upload: the child never saw them)
    fs.invalidate_cache()
    assert not fs.exists(remote.removeprefix("s3://"))  # removed once the result was read
    assert not list((child / "tmp").glob("stageflow-job-*"))  # the child's download directory is gone
