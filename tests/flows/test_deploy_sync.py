"""The deploy_sync flow run for real on the Prefect test harness: a change table artifact, the
result document, and a failing hook that rolls back and fails the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _project(tmp_path: Path, hooks: str = "[]") -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "app").mkdir(parents=True)
    (src / "app/index.js").write_text("v1\n")
    (src / "stageflow.toml").write_text(
        f'[sync.environments.api]\nrole = "apiserver"\ntarget = "{dst}"\nmode = "releases"\nhooks = {hooks}\n'
    )
    (dst / ".stageflow").mkdir(parents=True)
    (dst / ".stageflow/role").write_text("apiserver\n")
    return src, dst


def test_deploy_sync_flow_publishes_changes(tmp_path: Path) -> None:
    import httpx
    from prefect.settings import PREFECT_API_URL
    from stageflow.flows.deploy_sync import DeploySyncParams, deploy_sync

    src, dst = _project(tmp_path)
    doc = deploy_sync(DeploySyncParams(source=str(src), environment="api"))
    assert doc["changes"]["added"] == ["app/index.js", "stageflow.toml"]
    assert (dst / "current/app/index.js").read_text() == "v1\n"
    # (the 3.8 client sends nulls this server version rejects, so ask the REST API directly)
    resp = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": ["deploy-sync-api"]}}, "limit": 5, "offset": 0},
        timeout=60,
    )
    resp.raise_for_status()
    artifacts = resp.json()
    assert (
        artifacts and artifacts[0]["type"] == "table" and "app/index.js" in json.dumps(artifacts[0]["data"])
    )


def test_deploy_sync_flow_fails_and_rolls_back(tmp_path: Path) -> None:
    from stageflow.flows.deploy_sync import DeploySyncParams, deploy_sync

    from stageflow.sync.engine import DeployFailed

    src, dst = _project(tmp_path)
    deploy_sync(DeploySyncParams(source=str(src), environment="api"))
    good = (dst / "current").readlink()
    (src / "app/index.js").write_text("v2\n")
    text = (
        (src / "stageflow.toml")
        .read_text()
        .replace("hooks = []", 'hooks = [{ use = "shell", run = "exit 1" }]')
    )
    (src / "stageflow.toml").write_text(text)
    with pytest.raises(DeployFailed, match="rolled back to release"):
        deploy_sync(DeploySyncParams(source=str(src), environment="api"))
    assert (dst / "current").readlink() == good and (dst / "current/app/index.js").read_text() == "v1\n"


def test_deploy_sync_flow_reads_the_project_file_named_by_stageflow_config(
    tmp_path: Path, monkeypatch
) -> None:
    """A deployment gives only source and environment: the profile and [notify] come from the file
    STAGEFLOW_CONFIG names (the source tree has none)."""
    import logging

    from stageflow.flows.deploy_sync import DeploySyncParams, deploy_sync

    src, dst = _project(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "stageflow.toml").write_text(
        (src / "stageflow.toml").read_text()
        + '\n[notify]\nbackend = "log"\noptions = { logger = "ops.deploys" }\n'
    )
    (src / "stageflow.toml").unlink()
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(etc / "stageflow.toml"))
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("ops.deploys").addHandler(handler)
    try:
        doc = deploy_sync(DeploySyncParams(source=str(src), environment="api"))
    finally:
        logging.getLogger("ops.deploys").removeHandler(handler)
    assert doc["changes"]["added"] == ["app/index.js"]
    [record] = seen
    assert record.getMessage().startswith("deploy-sync api done | 1 added")
