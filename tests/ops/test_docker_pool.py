"""The gpu work pool on a real Docker daemon (no registry: the image is a Debian root filesystem made
with debootstrap and `docker import`ed, see conftest), a real `prefect worker start --type docker`
and a real `prefect server start` on loopback:

* the repository's `video-inference` deployment (its pull step, the pool's IfNotPresent pull
  policy), its job variables only adding the bind mounts a test needs and dropping the GPU request:
  the parent `video_analysis` -> docker child -> inference.json -> parent chain completes, with the
  OCR result computed inside the container;
* the same deployment with the pool's own template: the GPU device request reaches the daemon (a
  GPU-less daemon refuses it with `could not select device driver "" with capabilities: [[gpu]]`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow

PARENT = """
import json, sys
from stageflow.flows.video import AnalysisParams, video_analysis
clip, out = sys.argv[1], sys.argv[2]
video = {"transcriber": "", "detector": "", "ocr": ["rapidocr"],
         "inference_deployment": "video-inference/video-inference-test", "inference_timeout_s": 600}
doc = video_analysis(AnalysisParams(inputs=[clip], out=out, video=video))
print("RESULT " + json.dumps(doc["videos"], default=str))
"""


def _project(ops, dest: Path, image: str, mounts: list[str]) -> None:
    doc = yaml.safe_load((ops.ROOT / "prefect.yaml").read_text())
    (inference,) = [d for d in doc["deployments"] if d["name"] == "video-inference"]
    real = dict(inference, work_pool={"name": "gpu", "job_variables": {"image": image}})
    path = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    test = dict(
        inference,
        name="video-inference-test",
        work_pool={
            "name": "gpu",
            "job_variables": {
                "image": image,
                "network_mode": "host",  # the server listens on the host's 127.0.0.1
                "volumes": mounts,
                "env": {"PATH": path, "PREFECT_LOGGING_EXTRA_LOGGERS": "stageflow", "HOME": "/tmp"},
                "container_create_kwargs": {},  # no GPU on a CI machine (the request is checked below)
            },
        },
    )
    doc["deployments"] = [real, test]
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))


def _child_logs(ops, api: str) -> list[str]:
    ids = [r["id"] for r in ops.flow_runs(api, "video-inference-test")]
    logs = httpx.post(
        f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}, "limit": 50}, timeout=60
    ).json()
    return [entry["message"][-1500:] for entry in logs]


def _daemon_has_gpu_runtime(host: str) -> bool:
    import docker

    client = docker.DockerClient(base_url=host)
    try:
        return "nvidia" in (client.info().get("Runtimes") or {})
    finally:
        client.close()


def test_video_inference_runs_in_a_docker_container_and_the_gpu_request_reaches_the_daemon(
    server, docker_host, docker_test_image, tmp_path, ops
):
    from stageflow.video import synthetic as s

    api = server["PREFECT_API_URL"]
    work = tmp_path / "work"
    work.mkdir()
    clip = s.make_video(work / "clip.mp4", [s.Scene(1.0, "HELLO"), s.Scene(1.0, "THANKS", (230, 230, 255))])
    project = tmp_path / "project"
    project.mkdir()
    _project(ops, project / "prefect.yaml", docker_test_image, ops.host_python_mounts(work))
    env = {
        **{k: v for k, v in server.items() if not k.startswith("_")},
        "STAGEFLOW_HOME": str(tmp_path / "home"),
        "DOCKER_HOST": docker_host,
    }
    ops.sh([ops.BIN / "stageflow", "pools", "create", "--gpu-image", docker_test_image], env, project)
    ops.sh([ops.BIN / "prefect", "--no-prompt", "deploy", "--all"], env, project)
    pool = httpx.get(f"{api}/work_pools/gpu", timeout=60).json()
    props = pool["base_job_template"]["variables"]["properties"]
    assert props["image_pull_policy"]["default"] == "IfNotPresent"

    worker_log = tmp_path / "worker.log"
    with open(worker_log, "w") as log:
        worker = subprocess.Popen(
            [
                ops.BIN / "prefect",
                "worker",
                "start",
                "--pool",
                "gpu",
                "--type",
                "docker",
                "--install-policy",
                "never",
            ],
            cwd=tmp_path,
            env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        parent = subprocess.run(
            [sys.executable, "-c", PARENT, str(clip), str(work / "out")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert parent.returncode == 0, "\n".join(_child_logs(ops, api))
        line = [ln for ln in parent.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        [record] = json.loads(line.removeprefix("RESULT "))
        assert record["error"] is None, record["error"]
        assert [o["text"] for o in record["ocr"]] == ["HELLO", "THANKS"], record["ocr"]
        children = ops.flow_runs(api, "video-inference-test")
        assert len(children) == 1 and children[0]["state"]["type"] == "COMPLETED", children
        assert list((work / "out" / "jobs").glob("*/inference.json"))

        # The deployment as the repository ships it: the pool's device request goes to the daemon.
        (real,) = httpx.post(
            f"{api}/deployments/filter",
            json={"deployments": {"name": {"any_": ["video-inference"]}}},
            timeout=60,
        ).json()
        # a real decoded job (the record the pipeline hands to inference), from the chain above
        job = json.loads(next((work / "out" / "jobs").glob("*/job.json")).read_text(encoding="utf-8"))
        run = httpx.post(
            f"{api}/deployments/{real['id']}/create_flow_run",
            json={"parameters": {"job": job, "video": {}}},
            timeout=60,
        ).json()
        assert "id" in run, run  # the server validated the parameters against the flow's signature
        state = ops.wait_for(
            lambda: (
                (st := httpx.get(f"{api}/flow_runs/{run['id']}", timeout=60).json()["state"])["type"]
                in {"CRASHED", "FAILED", "COMPLETED"}
                and st
            ),
            300,
            "the GPU-requesting run to reach the daemon",
            worker_log,
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
    if _daemon_has_gpu_runtime(docker_host):  # pragma: no cover - a GPU host: the container starts
        assert "could not select device driver" not in (state["message"] or ""), state
    else:
        assert state["type"] == "CRASHED", state
        assert 'could not select device driver "" with capabilities: [[gpu]]' in state["message"], state
