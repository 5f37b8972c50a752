"""`[video] job_storage`: a decoded job's media through storage both pools reach, against real servers:
a local S3-compatible server (moto's server mode on 127.0.0.1) and a real sshd over sftp (the sshd
fixture of tests/sync/test_ssh.py, host key checked against a known_hosts file)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stageflow.errors import ConfigError, JobFailed
from stageflow.video import jobstore
from stageflow.video.decode import MediaInfo
from stageflow.video.pipeline.records import DecodedJob, Inference, KeptFrame
from stageflow.video.settings import VideoConfig


def _load_sshd_fixture():  # the real-sshd fixture of tests/sync/test_ssh.py, without duplicating it
    path = Path(__file__).parents[1] / "sync" / "test_ssh.py"
    spec = importlib.util.spec_from_file_location("_jobstore_test_ssh", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_ssh = _load_sshd_fixture()
sshd = _ssh.sshd
needs_sshd = pytest.mark.skipif(not os.path.exists(_ssh.SSHD), reason="needs openssh-server (/usr/sbin/sshd)")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1 (random port) with a bucket ``jobs``; the credentials as the
    standard AWS_* variables (what s3fs reads on each worker)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets in process-wide state that every in-process server shares: start empty
    # (another module's server may have made a bucket "jobs" in this pytest process)
    httpx.post(f"http://{host}:{port}/moto-api/reset", timeout=60).raise_for_status()
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    options = {"endpoint_url": f"http://{host}:{port}"}
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir("jobs")
    yield options
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def sftp_storage(sshd, tmp_path: Path, known_hosts: bool = True) -> tuple[str, dict]:
    """The job_storage URL and options for the fixture's sshd (port and key from its ssh command)."""
    words = shlex.split(sshd.ssh_command)
    port, key = words[words.index("-p") + 1], words[words.index("-i") + 1]
    hosts = tmp_path / "known_hosts"
    host_key = Path(key).with_name("host.pub").read_text().split()
    hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n" if known_hosts else "")
    root = tmp_path / "remote-jobs"
    root.mkdir(exist_ok=True)
    options = {"key_filename": key, "look_for_keys": False, "allow_agent": False, "known_hosts": str(hosts)}
    return f"sftp://{sshd.user}@127.0.0.1:{port}{root}", options


def make_job(workdir: Path) -> DecodedJob:
    """A job directory as decode_job leaves it (content: distinct bytes per file)."""
    workdir.mkdir(parents=True)
    frames = [
        KeptFrame(t=float(i), index=i * 30, sharpness=50.0, file=f"frame-{i * 30:06d}.jpg") for i in range(3)
    ]
    for i, frame in enumerate(frames):
        (workdir / frame.file).write_bytes(bytes([i]) * (1000 + i))
    (workdir / "audio.npy").write_bytes(os.urandom(4096))
    job = DecodedJob(
        video_id="v1",
        source="file",
        title="t",
        path="/x/v1.mp4",
        workdir=str(workdir),
        info=MediaInfo(path="/x/v1.mp4", duration_s=3.0, has_video=True, has_audio=True),
        frames=frames,
        audio_file="audio.npy",
        frames_kept=3,
    )
    job.save()
    return job


def round_trip(tmp_path: Path, storage: str, options: dict) -> None:
    job = make_job(tmp_path / "parent" / "v1-abc")
    remote = jobstore.upload_job(job, storage, options)
    assert remote.startswith(storage.rstrip("/") + "/v1-abc-")
    child = jobstore.fetch_job(remote, options, tmp_path / "child", video_id="v1")
    assert child.workdir == str(tmp_path / "child") and child.frames == job.frames
    for name in ["audio.npy", *(f.file for f in job.frames)]:
        assert (tmp_path / "child" / name).read_bytes() == (Path(job.workdir) / name).read_bytes()
    result = Inference(batches=2, max_batch=16, timings_s={"look": 1.5})
    jobstore.put_result(remote, options, result)
    assert jobstore.get_result(remote, options) == result
    with jobstore.opened(remote, options) as (fs, root):
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) == sorted(
            ["audio.npy", "job.json", "inference.json", *(f.file for f in job.frames)]
        )  # no temporary file left
    jobstore.remove_job(remote, options)
    with jobstore.opened(remote, options) as (fs, root):
        assert not fs.exists(root)


def test_round_trip_through_s3(tmp_path, s3):
    round_trip(tmp_path, "s3://jobs/video", s3)


@needs_sshd
def test_round_trip_over_sftp(tmp_path, sshd):
    storage, options = sftp_storage(sshd, tmp_path)
    round_trip(tmp_path, storage, options)
    assert list((tmp_path / "remote-jobs").iterdir()) == []  # removed on the server's disk


@needs_sshd
def test_sftp_refuses_an_unknown_host_key(tmp_path, sshd):
    storage, options = sftp_storage(sshd, tmp_path, known_hosts=False)
    with pytest.raises(JobFailed) as err:
        jobstore.upload_job(make_job(tmp_path / "v1"), storage, options)
    message = str(err.value)
    assert message.startswith("[video] job_storage sftp://") and "ssh-keyscan -p" in message
    assert "\n" not in message and list((tmp_path / "remote-jobs").iterdir()) == []


def test_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(JobFailed) as err:  # port 9 on 127.0.0.1: nothing listens (connection refused)
        jobstore.upload_job(make_job(tmp_path / "v1"), "sftp://u@127.0.0.1:9/jobs", {})
    assert str(err.value).startswith("[video] job_storage sftp://u@127.0.0.1:9/") and "\n" not in str(
        err.value
    )
    assert "cannot connect" in str(err.value)


def test_remote_job_cannot_write_outside_the_child_directory(tmp_path):
    storage = f"file://{tmp_path / 'store'}"
    remote = jobstore.upload_job(make_job(tmp_path / "v1"), storage, {})
    job_file = Path(remote.removeprefix("file://")) / "job.json"
    doc = json.loads(job_file.read_text())
    for bad in ("../../escaped.jpg", "/tmp/abs.jpg", ".hidden", "job.json"):
        doc["frames"][0]["file"] = bad
        job_file.write_text(json.dumps(doc))
        with pytest.raises(JobFailed, match="unsafe file name"):
            jobstore.fetch_job(remote, {}, tmp_path / "child")
    assert not (tmp_path / "escaped.jpg").exists() and not list((tmp_path / "child").iterdir())
    with pytest.raises(JobFailed, match="holds job 'v1', not 'v2'"):
        doc["frames"][0]["file"] = "frame-000000.jpg"
        job_file.write_text(json.dumps(doc))
        jobstore.fetch_job(remote, {}, tmp_path / "child", video_id="v2")


def test_unfinished_upload_and_missing_result_say_so(tmp_path):
    storage = f"file://{tmp_path / 'store'}"
    remote = jobstore.upload_job(make_job(tmp_path / "v1"), storage, {})
    with pytest.raises(JobFailed, match="inference finished but .*/inference.json is missing"):
        jobstore.get_result(remote, {})
    (Path(remote.removeprefix("file://")) / "job.json").unlink()  # what a reader sees mid-upload
    with pytest.raises(JobFailed, match="has no job.json .the upload did not finish"):
        jobstore.fetch_job(remote, {}, tmp_path / "child")


def test_options_name_environment_variables_never_hold_secrets(monkeypatch):
    with pytest.raises(ValueError, match="password: a secret here would travel in the run parameters"):
        VideoConfig(job_storage="sftp://u@h/x", job_storage_options={"password": "hunter2"})
    with pytest.raises(ValueError, match="client_kwargs.aws_secret_access_key: a secret"):
        VideoConfig(job_storage_options={"client_kwargs": {"aws_secret_access_key": "s"}})
    with pytest.raises(ValueError, match="a password in the URL"):
        VideoConfig(job_storage="sftp://u:hunter2@h/x")
    monkeypatch.setenv("JOBS_PASSWORD", "hunter2")
    assert jobstore.storage_options({"password_env": "JOBS_PASSWORD", "port": 2}) == {
        "password": "hunter2",
        "port": 2,
    }
    with pytest.raises(ConfigError, match="password_env: environment variable 'NOT_SET_HERE' is not set"):
        jobstore.storage_options({"password_env": "NOT_SET_HERE"})


def test_storage_urls_are_checked(tmp_path):
    from stageflow.validate import validate_project

    with pytest.raises(ValueError, match=r"unknown storage scheme 'nope://'"):
        VideoConfig(job_storage="nope://bucket/jobs")
    with pytest.raises(ValueError, match="neither a URL"):
        VideoConfig(job_storage="relative/jobs")
    assert VideoConfig(job_storage=" s3://b/jobs ").job_storage == "s3://b/jobs"
    assert jobstore.storage_problem("gs://b/jobs") == "gs:// needs gcsfs: pip install gcsfs"  # not installed
    config = tmp_path / "stageflow.toml"
    config.write_text('[video]\njob_storage = "gs://b/jobs"\n')
    report = validate_project(config, None, False)
    assert report.problems == ["[video] job_storage gs://b/jobs: gs:// needs gcsfs: pip install gcsfs"]
    config.write_text('[video]\njob_storage = "s3://b/jobs"\n')
    report = validate_project(config, None, False)
    assert (
        report.ok
        and "[video] job_storage s3://b/jobs (unused: inference_deployment is not set)" in report.checked
    )
    config.write_text('[video]\njob_storage = "nope://b/jobs"\n')
    [problem] = validate_project(config, None, False).problems
    assert "job_storage" in problem and "unknown storage scheme 'nope://'" in problem
    with pytest.raises(ConfigError, match=r"\[video\] job_storage gs://b/jobs: gs:// needs gcsfs"):
        jobstore.upload_job(make_job(tmp_path / "v1"), "gs://b/jobs", {})
