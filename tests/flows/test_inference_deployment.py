"""The parent video flow hands inference to a *deployment* (the GPU pool's role) with run_deployment
when `[video] inference_deployment` is set: a separate process serves `video-inference`, runs it, and
leaves the result in the shared job directory for the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

SERVE = (
    "from stageflow.flows.inference import video_inference\n"
    "video_inference.serve(name='video-inference', print_starting_message=False)\n"
)


def test_parent_runs_inference_through_a_deployment(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from stageflow.flows.video import AnalysisParams, video_analysis

    from stageflow.video import synthetic as s

    clip = s.make_video(
        tmp_path / "clip.mp4", [s.Scene(1.0, "HELLO"), s.Scene(1.0, "THANKS", (230, 230, 255))]
    )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    served = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        env=env,
        cwd=tmp_path,
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
        video = {
            "transcriber": "",
            "detector": "",
            "ocr": ["rapidocr"],
            "inference_deployment": "video-inference/video-inference",
            "inference_timeout_s": 300,
        }
        doc = video_analysis(AnalysisParams(inputs=[str(clip)], out=str(tmp_path / "out"), video=video))
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=30)
    [record] = doc["videos"]
    assert record["error"] is None
    assert [o["text"] for o in record["ocr"]] == ["HELLO", "THANKS"]
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])), limit=5
        )
    assert len(runs) == 1 and runs[0].state.is_completed()
    assert (tmp_path / "out" / "jobs").is_dir() and list((tmp_path / "out" / "jobs").glob("*/inference.json"))
