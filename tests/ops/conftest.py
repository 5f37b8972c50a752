"""A real Prefect server on a loopback port (one per test module), with the scheduler looping every
two seconds so interval schedules of a few seconds fire during a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], seconds: float, what: str, log: Path | None = None) -> Any:
    """Poll ``predicate`` once a second until it returns something truthy (or give up, loudly).

    A request to the server that times out or is refused counts as "not yet": on a saturated CPU the
    SQLite-backed server can take longer than a client's timeout to answer one poll."""
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.TransportError as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(1)
    tail = log.read_text(errors="replace")[-4000:] if log and log.is_file() else ""
    error = f" (last poll: {last_error!r})" if last_error else ""
    raise AssertionError(f"gave up after {seconds:g} s waiting for {what}{error}\n{tail}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STAGEFLOW_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_UI_URL=f"http://127.0.0.1:{port}",
        # schedules of a few seconds: the scheduler loops every 2 s (default 60)
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME="0:00:30",
    )
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [BIN / "prefect", "server", "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                return httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 180, "the Prefect server to become healthy", home / "server.log")
        yield {**env, "_SERVER_LOG": str(home / "server.log")}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture
def ops():
    """The helpers below, for test modules (conftest is not importable under importlib mode)."""
    import types

    return types.SimpleNamespace(
        BIN=BIN,
        ROOT=ROOT,
        sh=sh,
        wait_for=wait_for,
        flow_runs=flow_runs,
        free_port=free_port,
        host_python_mounts=host_python_mounts,
    )


def sh(args, env, cwd, timeout=300) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        env={k: v for k, v in env.items() if not k.startswith("_")},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def flow_runs(api: str, deployment_name: str) -> list[dict[str, Any]]:
    """Every flow run of the deployment (by name), oldest first."""
    deps = httpx.post(
        f"{api}/deployments/filter",
        json={"deployments": {"name": {"any_": [deployment_name]}}},
        timeout=60,
    ).json()
    if not deps:
        return []
    return httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"id": {"any_": [d["id"] for d in deps]}}, "sort": "EXPECTED_START_TIME_ASC"},
        timeout=60,
    ).json()


# --- a real Docker daemon and a test image built without any registry --------------------------------
#
# .ci/run starts dockerd and builds a Debian root filesystem once with debootstrap (from Debian's
# mirror, cached under ~/.cache/stageflow-ci); the test imports it (`docker import`, no pull). The
# image carries no Python packages of its own: the container gets this machine's interpreter, venv
# and checkout bind-mounted at the same paths, so it runs exactly the code under test.

DOCKER_ROOTFS = Path(
    os.environ.get("STAGEFLOW_DOCKER_ROOTFS")
    or Path(os.environ.get("STAGEFLOW_CI_CACHE") or Path.home() / ".cache/stageflow-ci") / "docker-rootfs.tar"
)
TEST_IMAGE = "stageflow-test-base:bookworm"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("STAGEFLOW_REQUIRE_DOCKER") == "1":
        pytest.fail(f"STAGEFLOW_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


def _docker_answers(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=10)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    """A Docker daemon's address: $DOCKER_HOST or the default socket if one answers, else a private
    `dockerd` started here (root only); skipped with the reason where none can run."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if _docker_answers(host):
        yield host
        return
    import shutil

    dockerd = shutil.which("dockerd")
    if not dockerd or os.geteuid() != 0:
        _skip_or_fail(f"no Docker daemon answers at {host} and dockerd cannot be started here")
    root = Path("/tmp") / f"sf-dockerd-{os.getpid()}"  # short: the socket path has a length limit
    root.mkdir()
    host = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "w")
    proc = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            root / "data",
            "--exec-root",
            root / "exec",
            "-H",
            host,
            "--pidfile",
            root / "dockerd.pid",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _docker_answers(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                _skip_or_fail(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-500:]}")
            time.sleep(1)
        yield host
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        log.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def docker_test_image(docker_host) -> str:
    """The Debian root filesystem imported as an image (no registry involved)."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=300)
    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if not DOCKER_ROOTFS.is_file():
        _skip_or_fail(f"no root filesystem tarball at {DOCKER_ROOTFS} (.ci/run builds it with debootstrap)")
    repo, tag = TEST_IMAGE.split(":")
    client.api.import_image_from_file(str(DOCKER_ROOTFS), repository=repo, tag=tag)
    client.close()
    return TEST_IMAGE


def host_python_mounts(*extra: Path) -> list[str]:
    """Bind mounts that let a container run this interpreter, venv and checkout at the same paths."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), ROOT, *extra} - {Path("/usr")}  # /usr: the image's
    keep = [p for p in paths if not any(q != p and q in p.parents for q in paths)]
    return [f"{p}:{p}" for p in sorted(keep)]
