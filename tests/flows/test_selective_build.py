"""The selective_build flow as real Prefect runs (session harness) on a git copy of the bundled sample
monorepo: builds, artifacts (mermaid plan graph, timings table), a cached re-run, and a failing build
that ends the run Failed without caching."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from stageflow.flows.selective_build import SelectiveBuildParams, selective_build
from stageflow.samples import SAMPLES_DIR

from stageflow.errors import JobFailed


def _artifacts(key: str) -> list[dict]:
    """Artifacts by key through Prefect's REST API (see test_video_discovery for why not the client)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 10},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "monorepo"
    shutil.copytree(SAMPLES_DIR / "monorepo", repo, ignore=shutil.ignore_patterns("dist", ".stageflow"))
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "sample"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    return repo


def test_selective_build_flow_builds_publishes_and_caches(sample_repo: Path):
    doc = selective_build(SelectiveBuildParams(repo=str(sample_repo)))
    assert sorted(doc["built"]) == sorted(doc["workspaces"]) and len(doc["workspaces"]) == 6
    web = (sample_repo / "apps/web/dist/out.txt").read_text()
    assert web.startswith("@sample/web:") and "@sample/types:" in web
    [plan] = _artifacts("selective-build-plan")[:1]
    assert "```mermaid" in plan["data"] and "graph LR" in plan["data"] and "class " in plan["data"]
    [table] = _artifacts("selective-build-timings")[:1]
    rows = table["data"] if isinstance(table["data"], list) else json.loads(table["data"])
    assert {r["workspace"] for r in rows} == set(doc["workspaces"]) and {r["status"] for r in rows} == {
        "built"
    }

    (sample_repo / "apps/api/src/index.txt").write_text("changed api\n")
    again = selective_build(SelectiveBuildParams(repo=str(sample_repo), base="HEAD"))
    assert again["affected"] == ["@sample/api"] and again["built"] == ["@sample/api"]
    assert set(again["cached"]) == {"@sample/types", "@sample/utils"}


def test_selective_build_flow_fails_on_a_failing_build(sample_repo: Path):
    manifest = sample_repo / "packages/utils/package.json"
    data = json.loads(manifest.read_text())
    data["scripts"]["build"] = "node -e \"console.error('utils broke'); process.exit(4)\""
    manifest.write_text(json.dumps(data))
    with pytest.raises(JobFailed, match=r"build failed: @sample/utils \(exit code 4\): utils broke") as err:
        selective_build(SelectiveBuildParams(repo=str(sample_repo)))
    assert "its log tail is in the task run 'build @sample/utils'" in str(err.value)
    # one task run per workspace, readable names; the failing one carries its log tail
    import httpx
    from prefect.settings import PREFECT_API_URL

    runs = httpx.post(
        f"{PREFECT_API_URL.value()}/task_runs/filter",
        json={"task_runs": {"name": {"like_": "build @sample/"}}, "sort": "EXPECTED_START_TIME_DESC"},
        timeout=60,
    ).json()
    latest = {}
    for r in runs:
        latest.setdefault(r["name"], r["state"])
    assert latest["build @sample/utils"]["type"] == "FAILED"
    assert "utils broke" in latest["build @sample/utils"]["message"]
    assert latest["build @sample/types"]["name"] in {"Built", "Cached"}
    assert latest["build @sample/web"]["name"] == "Blocked"
    assert not (sample_repo / "apps/web/dist").exists()
    assert (sample_repo / "packages/types/dist/out.txt").exists()
    assert len(list((sample_repo / ".stageflow/cache").glob("*.tar"))) == 1  # only types was cached


def test_cli_prefect_flag_runs_the_flow(sample_repo: Path, capsys: pytest.CaptureFixture[str]):
    from stageflow.cli import main

    try:
        main(["build", str(sample_repo), "--prefect", "--json", "--filter", "@sample/api"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["built"] == ["@sample/types", "@sample/utils", "@sample/api"]
    assert not (sample_repo / "apps/web/dist").exists()


def test_partial_failure_without_raise_is_a_named_state_with_a_warning(sample_repo: Path):
    manifest = sample_repo / "packages/utils/package.json"
    data = json.loads(manifest.read_text())
    data["scripts"]["build"] = "node -e \"console.error('utils broke'); process.exit(4)\""
    manifest.write_text(json.dumps(data))
    state = selective_build(
        SelectiveBuildParams(repo=str(sample_repo), raise_on_failure=False), return_state=True
    )
    assert state.is_completed() and state.name == "Completed with failures", state
    assert "build failed: @sample/utils" in state.message
    assert state.result()["failed"] == ["@sample/utils"]
    [warning] = _artifacts("selective-build-warning")[:1]
    assert "Build completed with failures" in warning["data"] and "@sample/utils" in warning["data"]


def test_cli_prefect_failed_build_is_a_failed_run_with_the_same_report(
    sample_repo: Path, capsys: pytest.CaptureFixture[str]
):
    """`stageflow build --prefect` exits 1 on a failing workspace, and its run is Failed in the UI
    (not "Completed with failures"), while --json prints the same report as without --prefect."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from stageflow.cli import main

    manifest = sample_repo / "packages/utils/package.json"
    data = json.loads(manifest.read_text())
    data["scripts"]["build"] = "node -e \"console.error('utils broke'); process.exit(4)\""
    manifest.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(sample_repo), "--prefect", "--json"])
    assert exit_info.value.code == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed"] == ["@sample/utils"] and "@sample/web" in doc["blocked"]
    runs = httpx.post(
        f"{PREFECT_API_URL.value()}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["selective-build"]}}, "sort": "START_TIME_DESC", "limit": 1},
        timeout=60,
    ).json()
    assert runs[0]["state"]["type"] == "FAILED", runs[0]["state"]
    assert "build failed: @sample/utils" in runs[0]["state"]["message"]
