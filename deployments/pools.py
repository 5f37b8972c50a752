"""Work pools for stageflow: ``cpu`` (process workers: sync, build, discovery, the analysis parent,
the monitor) and ``gpu`` (Docker workers whose containers get every GPU through
``container_create_kwargs.device_requests``: the video-inference child), plus a concurrency limit on
the ``gpu`` tag so inference tasks never oversubscribe a card. Idempotent: re-running updates."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

GPU_DEVICE_REQUESTS = [{"count": -1, "capabilities": [["gpu"]]}]
DEFAULT_GPU_IMAGE = "stageflow-gpu:latest"
#: A locally built image (``docker build -t stageflow-gpu``) is used as it is; "Always" would try a
#: registry and crash the run at pull time when the image exists only on the worker's machine.
DEFAULT_PULL_POLICY = "IfNotPresent"
PULL_POLICIES = ("IfNotPresent", "Always", "IfPossible", "Never")
#: stageflow's own loggers (engines, notifiers) go to the Prefect run log, not just the worker's stderr.
RUN_ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "stageflow"}


@dataclass(frozen=True)
class PoolSpec:
    name: str
    type: str
    base_job_template: dict[str, Any] | None
    description: str


def _docker_worker() -> Any:
    try:
        from prefect_docker.worker import DockerWorker
    except ModuleNotFoundError as exc:
        from stageflow.errors import BadInput

        missing = (exc.name or "prefect_docker").split(".")[0]
        raise BadInput(
            f"the gpu work pool needs the docker extra ({missing} is not installed): "
            'pip install "stageflow[docker]"'
        ) from None
    return DockerWorker


def process_base_job_template() -> dict[str, Any]:
    """The process worker's default template with stageflow's loggers sent to the run log."""
    from prefect.workers.process import ProcessWorker

    template = copy.deepcopy(ProcessWorker.get_default_base_job_template())
    template["variables"]["properties"]["env"]["default"] = dict(RUN_ENV)
    return template


def gpu_base_job_template(
    image: str = DEFAULT_GPU_IMAGE,
    env: dict[str, str] | None = None,
    pull_policy: str = DEFAULT_PULL_POLICY,
) -> dict[str, Any]:
    """The Docker worker's default template with GPU device requests, the stageflow GPU image, its
    pull policy and the offline switches as defaults (a deployment may still override them as job
    variables)."""
    if pull_policy not in PULL_POLICIES:
        from stageflow.errors import BadInput

        raise BadInput(f"image pull policy {pull_policy!r}: use one of {', '.join(PULL_POLICIES)}")
    DockerWorker = _docker_worker()

    template = copy.deepcopy(DockerWorker.get_default_base_job_template())
    props = template["variables"]["properties"]
    props["container_create_kwargs"]["default"] = {"device_requests": GPU_DEVICE_REQUESTS}
    props["image"]["default"] = image
    props["image_pull_policy"]["default"] = pull_policy
    props["env"]["default"] = {
        **RUN_ENV,
        "HF_HUB_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        **(env or {}),
    }
    return template


def pool_specs(gpu_image: str = DEFAULT_GPU_IMAGE, pull_policy: str = DEFAULT_PULL_POLICY) -> list[PoolSpec]:
    return [
        PoolSpec(
            "cpu",
            "process",
            process_base_job_template(),
            "stageflow CPU work: deploy-sync, builds, discovery, monitor",
        ),
        PoolSpec(
            "gpu",
            "docker",
            gpu_base_job_template(gpu_image, pull_policy=pull_policy),
            "stageflow GPU inference (Docker, all GPUs)",
        ),
    ]


def create_pools(
    gpu_image: str = DEFAULT_GPU_IMAGE, gpu_slots: int = 1, pull_policy: str = DEFAULT_PULL_POLICY
) -> list[str]:
    """Create or update the pools and the ``gpu`` tag concurrency limit. Returns what was done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    done = []
    specs = pool_specs(gpu_image, pull_policy)  # before any API call: a missing extra fails first
    with get_client(sync_client=True) as client:
        for spec in specs:
            create = WorkPoolCreate(name=spec.name, type=spec.type, description=spec.description)
            if spec.base_job_template is not None:
                create = WorkPoolCreate(
                    name=spec.name,
                    type=spec.type,
                    description=spec.description,
                    base_job_template=spec.base_job_template,
                )
            client.create_work_pool(create, overwrite=True)
            done.append(f"work pool {spec.name} ({spec.type})")
        client.create_concurrency_limit(tag="gpu", concurrency_limit=gpu_slots)
        done.append(f"concurrency limit: tag 'gpu' = {gpu_slots}")
    return done


def show_pool(name: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(name)
    return {"name": pool.name, "type": pool.type, "base_job_template": pool.base_job_template}
