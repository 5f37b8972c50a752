"""`stageflow demo` (README's first command) end to end under the Prefect harness: the real flows of
all four families on the bundled samples (video analysis where its extra is installed), and a
second run that finds nothing new, restores every build from the cache and ships nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from stageflow.deployments.demo import run_demo


@pytest.mark.skipif(shutil.which("node") is None, reason="the sample monorepo builds with node")
def test_demo_runs_discovery_build_and_deploy(stageflow_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_demo()
    assert (first["discovery"]["found"], first["discovery"]["new"]) == (2, 2)
    assert len(first["build"]["built"]) == 6 and first["build"]["failed"] == []
    current = stageflow_home / "demo" / "servers" / "api" / "current"
    assert (current / "apps" / "api" / "package.json").is_file()
    assert not (current / "apps" / "web").exists()  # the apiserver environment ships only its app
    assert (current / "apps" / "api" / "dist").is_dir()  # the build's outputs were deployed
    lines = (stageflow_home / "demo" / "results" / "videos.jsonl").read_text().splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == ["AbCdEfGhIj0", "OldVideo0001"]

    video = first["video"]
    if video is not None:  # the video extra is installed (always in CI)
        assert video["error"] is None and "HELLO" in video["ocr"]
        [cand] = video["candidates"]
        assert cand["status"] == "no_commerce_match" and cand["clip"].endswith(".mp4")

    second = run_demo()
    assert second["discovery"]["new"] == 0
    assert second["build"]["built"] == [] and len(second["build"]["cached"]) == 6
    assert second["sync"]["release"] == first["sync"]["release"]
    assert all(not paths for paths in second["sync"]["changes"].values())
