"""Prefect pull steps for stageflow deployments.

Entrypoints are module paths of the installed package (``stageflow.flows.monitor:monitor``), so a
worker needs no copy of the directory the deployment was made from. Without an explicit ``pull``
section ``prefect deploy`` adds a step that changes into the deploy-time directory, and every run on a
machine (or container) that lacks it crashes with ``FileNotFoundError``; prefect.yaml names this
step instead::

    pull:
      - stageflow.deployments.steps.use_installed_package: {}

It checks that stageflow is importable where the run starts and, only when asked (``directory``, or
``STAGEFLOW_WORKDIR`` in the worker's environment), changes into a directory that exists there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def use_installed_package(directory: str | None = None) -> dict[str, Any]:
    """Pull step: run from the installed stageflow; optionally ``chdir`` into ``directory``.

    Returns ``{"directory": <cwd>, "stageflow_version": <version>}`` (Prefect passes step outputs
    on to later steps)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("stageflow")
    except PackageNotFoundError:  # pragma: no cover - the step module itself is stageflow's
        installed = "unknown"
    target = directory or os.environ.get("STAGEFLOW_WORKDIR") or None
    if target:
        path = Path(target).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"pull step use_installed_package: directory {target} does not exist on this worker: "
                "create it, or drop `directory`/STAGEFLOW_WORKDIR to run from the worker's own directory"
            )
        os.chdir(path)
    return {"directory": os.getcwd(), "stageflow_version": installed}
