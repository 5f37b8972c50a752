"""The video-analysis parent flow and its ``video_inference`` child under the Prefect test harness:
records per video, a bad video isolated, gpu-tagged tasks, dedup on re-run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from stageflow.video import synthetic as s
    from stageflow.video.offline import prepare_ultralytics

    root = tmp_path_factory.mktemp("video-flow")
    prepare_ultralytics(root / "yolo-config")
    speech = s.speech_track("the new serum is great", 3)
    return {
        "whisper": s.build_whisper_model(root / "whisper"),
        "yolo": s.build_yolo_model(root / "yolo.pt", root / "yolo-config"),
        "good": s.make_video(
            root / "good.mp4", [s.Scene(1.5, "SERUM"), s.Scene(1.5, "BUY", (230, 230, 255))], audio=speech
        ),
        "bad": (root / "bad.mp4", (root / "bad.mp4").write_bytes(b"\x00" * 100))[0],
    }


def _video(material) -> dict:
    return {
        "language": "en",
        "ocr": ["rapidocr"],
        "faster-whisper": {"model": str(material["whisper"]), "beam_size": 1, "cpu_threads": 1},
        "ultralytics": {"model": str(material["yolo"]), "imgsz": 320},
    }


def test_inference_tasks_are_tagged_gpu():
    from stageflow.flows.inference import look_task, transcribe_task

    assert "gpu" in transcribe_task.tags and "gpu" in look_task.tags


def test_video_analysis_flow_isolates_a_bad_video(material, tmp_path):
    from stageflow.flows.video import AnalysisParams, video_analysis

    from stageflow.store import open_store

    params = AnalysisParams(
        inputs=[str(material["bad"]), str(material["good"])],
        out=str(tmp_path / "out"),
        video=_video(material),
    )
    doc = video_analysis(params)
    bad, good = doc["videos"]
    assert "corrupt or truncated" in bad["error"]
    assert good["error"] is None and good["frames_decoded"] == 30 and good["frames_kept"] == 2
    assert [(o["t"], o["text"]) for o in good["ocr"]] == [(0.0, "SERUM"), (2.0, "BUY")]  # 1.0 s: a duplicate
    assert good["transcript"] and all(0 <= s["start"] <= s["end"] <= 3.0 for s in good["transcript"])
    store = open_store()
    try:
        assert len(store.records("video_analyses")) == 1
    finally:
        store.close()
    again = video_analysis(params)  # the good video is served from the store, not re-decoded
    untimed = {k: v for k, v in good.items() if k != "timings_s"}
    assert {k: v for k, v in again["videos"][1].items() if k != "timings_s"} == untimed
    # per-stage timings in the flow too: the first run decoded and ran inference, the second did not
    assert set(good["timings_s"]) >= {"fetch", "decode", "transcribe", "look"}
    assert "decode" not in again["videos"][1]["timings_s"]
    assert len(list((tmp_path / "out" / "jobs").iterdir())) == 1


def test_cli_analyze_prefect_runs_the_flow(material, tmp_path, capsys):
    import json

    from stageflow import cli
    from stageflow.commands import video

    if not any(c.name == "analyze" for c in cli.app.registered_commands):
        video.register(cli.app)
    project = tmp_path / "stageflow.toml"
    project.write_text(
        f'[video]\nlanguage = "en"\ndetector = ""\nocr = ["rapidocr"]\n'
        f'[video.faster-whisper]\nmodel = "{material["whisper"]}"\nbeam_size = 1\n',
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "analyze",
                str(material["good"]),
                str(material["bad"]),
                "--prefect",
                "--json",
                "-c",
                str(project),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 1
    good, bad = json.loads(capsys.readouterr().out)["videos"]
    assert good["error"] is None and [o["text"] for o in good["ocr"]] == ["SERUM", "BUY"]
    assert good["detections"] == [] and "corrupt or truncated" in bad["error"]
