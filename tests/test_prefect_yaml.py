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
