"""Flow parameters resolve as: given -> project file (STAGEFLOW_CONFIG) -> defaults, for every section
([notify] and [video] included), without starting Prefect."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from stageflow.runconfig import deep_merge, resolve_params


class VideoLikeParams(BaseModel):
    """The shape of the video-analysis flow's parameters."""

    inputs: list[str]
    video: dict[str, Any] = Field(default_factory=dict)
    notifier: str = "log"
    notifier_options: dict[str, Any] = Field(default_factory=dict)
    review_in_ui: bool | None = None


PROJECT = """
[notify]
backend = "log"
options = { logger = "ops.alerts" }

[video]
transcriber = ""
review_in_ui = true
ocr = ["rapidocr"]

[video.faster-whisper]
model = "/models/whisper-small"
device = "cpu"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    path = tmp_path / "etc" / "stageflow.toml"
    path.parent.mkdir()
    path.write_text(PROJECT)
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def test_sections_and_notify_come_from_the_project_file(project):
    from stageflow.video.settings import VideoConfig

    params = resolve_params(VideoLikeParams(inputs=["a.mp4"]))
    assert params.notifier == "log" and params.notifier_options == {"logger": "ops.alerts"}
    config = VideoConfig.model_validate(params.video)
    assert config.transcriber == "" and config.review_in_ui is True
    assert params.video["faster-whisper"] == {"model": "/models/whisper-small", "device": "cpu"}


def test_given_parameters_win_key_by_key(project):
    given = VideoLikeParams(
        inputs=["a.mp4"],
        video={"review_in_ui": False, "faster-whisper": {"device": "cuda"}},
        notifier="log",
    )
    params = resolve_params(given)
    assert params.video["review_in_ui"] is False and params.video["transcriber"] == ""
    assert params.video["faster-whisper"] == {"model": "/models/whisper-small", "device": "cuda"}
    # a notifier spelled out keeps its own (empty) options: [notify]'s belong to [notify]'s backend
    assert params.notifier_options == {}
    assert resolve_params(params) == params  # resolving twice changes nothing


def test_without_a_project_file_the_defaults_stand(tmp_path, monkeypatch):
    monkeypatch.delenv("STAGEFLOW_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    params = resolve_params(VideoLikeParams(inputs=["a.mp4"]))
    assert params == VideoLikeParams(inputs=["a.mp4"])


def test_build_and_sync_params_get_the_file_path(project, tmp_path):
    from stageflow.flows.deploy_sync import DeploySyncParams
    from stageflow.flows.selective_build import SelectiveBuildParams

    sync = resolve_params(DeploySyncParams(source=str(tmp_path), environment="api"))
    assert sync.config == str(project) and sync.notifier_options == {"logger": "ops.alerts"}
    other = tmp_path / "other.toml"
    other.write_text("")
    build = resolve_params(SelectiveBuildParams(repo=str(tmp_path), config=str(other)))
    assert build.config == str(other)  # given: never replaced


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {
        "a": {"b": 1, "c": 3},
        "d": [2],
    }
