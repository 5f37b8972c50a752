"""prefect.yaml: every deployment's module-path entrypoint loads a flow (no server is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_is_a_module_path_to_a_flow(deployment):
    from prefect.flows import Flow, load_flow_from_entrypoint

    entrypoint = deployment["entrypoint"]
    assert entrypoint.startswith("stageflow.flows.") and ".py" not in entrypoint
    flow = load_flow_from_entrypoint(entrypoint)
    assert isinstance(flow, Flow) and flow.name == deployment["name"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_every_deployed_flow_reports_failures(deployment):
    """Failed or crashed runs notify (with a link to the run): through the failure hook, or, for
    deploy-sync, its own failure/rollback messages; the GPU child's failures surface in its parent."""
    from prefect.flows import load_flow_from_entrypoint

    from stageflow.orchestration import notify_failure

    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert notify_failure in flow.on_crashed_hooks
    if deployment["name"] == "monitor":  # a failing check alerts from the tick itself, on change only
        from stageflow.flows.monitor import notify_unless_checks_failing

        assert notify_unless_checks_failing in flow.on_failure_hooks
    elif deployment["name"] not in {"deploy-sync", "video-inference"}:
        assert notify_failure in flow.on_failure_hooks


def test_pull_step_needs_no_deploy_directory(tmp_path, monkeypatch):
    """The explicit pull step (no `pull: null`, which makes `prefect deploy` add a chdir into the
    deploy-time directory): it stays where the worker starts the run, or goes to STAGEFLOW_WORKDIR."""
    from stageflow.deployments.steps import use_installed_package

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert doc["pull"] == [{"stageflow.deployments.steps.use_installed_package": {}}]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STAGEFLOW_WORKDIR", raising=False)
    assert use_installed_package()["directory"] == str(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("STAGEFLOW_WORKDIR", str(tmp_path / "work"))
    assert use_installed_package()["directory"] == str(tmp_path / "work")
    with pytest.raises(FileNotFoundError, match="does not exist on this worker"):
        use_installed_package(str(tmp_path / "missing"))
