"""Video test material, built once per session: a tiny random-weight Whisper (real tokenizer), an
untrained YOLO saved to .pt, and short generated videos (PIL text frames, espeak-ng speech, PyAV)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("STAGEFLOW_ALLOW_DOWNLOADS", None)


@dataclass(frozen=True)
class Media:
    talk: Path  # 6 s: "HELLO", "DISCOUNT", "THANKS" (+ blurred frames 20-24), English speech
    silent: Path  # 3 s, no audio track
    audio_only: Path  # 3 s speech, no video track
    korean: Path  # 2 s, Korean text
    truncated: Path
    empty: Path
    unsupported: Path


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from stageflow.video import synthetic
    from stageflow.video.offline import prepare_ultralytics

    root = tmp_path_factory.mktemp("models")
    prepare_ultralytics(root / "yolo-config")
    whisper = synthetic.build_whisper_model(root / "whisper-tiny")
    yolo = synthetic.build_yolo_model(root / "yolo11n-random.pt", root / "yolo-config")
    return {"whisper": whisper, "yolo": yolo}


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    from stageflow.video import synthetic as s

    root = tmp_path_factory.mktemp("media")
    speech = s.speech_track("hello world, this is a test of the video pipeline", 6)
    talk = s.make_video(
        root / "talk.mp4",
        [
            s.Scene(2.0, "HELLO"),
            s.Scene(2.0, "DISCOUNT", (255, 255, 200)),
            s.Scene(2.0, "THANKS", (200, 230, 255)),
        ],
        audio=speech,
        blur_frames=range(20, 25),
    )
    silent = s.make_video(root / "silent.mp4", [s.Scene(3.0, "SILENT")])
    audio_only = s.make_audio_only(root / "audio_only.mp4", s.speech_track("only a voice here", 3))
    korean = s.make_video(root / "korean.mp4", [s.Scene(2.0, "안녕하세요")], size=(640, 360))
    data = talk.read_bytes()
    truncated = root / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    unsupported = root / "clip.avi"
    unsupported.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST")
    return Media(talk, silent, audio_only, korean, truncated, empty, unsupported)


@pytest.fixture(scope="session")
def video_settings(models: dict[str, Path]) -> dict:
    """A [video] table using the tiny models with fast, deterministic decoding options."""
    return {
        "transcriber": "faster-whisper",
        "detector": "ultralytics",
        "ocr": ["rapidocr"],
        "language": "en",
        "faster-whisper": {
            "model": str(models["whisper"]),
            "beam_size": 1,
            "temperature": 0.0,
            "cpu_threads": 1,
        },
        "ultralytics": {"model": str(models["yolo"]), "imgsz": 320, "batch_size": 4},
        "sampling": {"batch_size": 2},
    }
