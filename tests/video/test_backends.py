"""The ML backends on real libraries and tiny models: faster-whisper (random weights, real
tokenizer), ultralytics (untrained yolo11n), rapidocr (shipped models, exact English) and tesseract
(exact Korean). Random models are checked for structure and timeline, OCR for exact text."""

from __future__ import annotations

import numpy as np
import pytest

from stageflow.errors import ConfigError
from stageflow.plugin_manager import get_plugin_manager
from stageflow.stages import Detection, Frame, OcrText, Segment, Transcript
from stageflow.video.decode import decode_audio, sample_frames
from stageflow.video.offline import MODELS, ModelNotFound
from stageflow.video.synthetic import Scene, render_scene


def _build(kind: str, name: str, options: dict):
    return get_plugin_manager().build(kind, name, options)


# --------------------------------------------------------------------------- faster-whisper


def test_whisper_transcript_is_on_the_video_timeline(media, video_settings):
    tr = _build("transcribers", "faster-whisper", video_settings["faster-whisper"])
    assert (tr.device, tr.compute_type) == ("cpu", "int8")
    result = tr.transcribe(decode_audio(media.talk), "en")
    assert isinstance(result, Transcript) and result.language == "en"
    assert result.duration_s == pytest.approx(6.0, abs=0.1)
    assert result.segments, "VAD found the espeak-ng speech"
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    for seg in result.segments:
        assert isinstance(seg, Segment) and 0.0 <= seg.start <= seg.end <= result.duration_s
        for word in seg.words:
            assert 0.0 <= word.start <= word.end <= result.duration_s
    assert any(seg.words for seg in result.segments), "word timestamps are on"


def test_whisper_silence_and_empty_audio(video_settings):
    tr = _build("transcribers", "faster-whisper", video_settings["faster-whisper"])
    assert tr.transcribe(np.zeros(0, np.float32)).segments == ()
    assert tr.transcribe(np.zeros(16000 * 2, np.float32), "ko").segments == ()  # VAD: no speech


def test_whisper_model_loads_once_per_process(video_settings):
    _build("transcribers", "faster-whisper", video_settings["faster-whisper"])
    before = MODELS.loads
    _build("transcribers", "faster-whisper", video_settings["faster-whisper"])
    assert MODELS.loads == before


def test_whisper_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        _build("transcribers", "faster-whisper", {"model": str(tmp_path / "missing-whisper")})


def test_whisper_model_name_offline_says_how_to_give_a_path():
    with pytest.raises(ModelNotFound, match=r"'small' is not a local path.*local model path"):
        _build("transcribers", "faster-whisper", {})


def test_whisper_dir_without_model_bin(tmp_path):
    with pytest.raises(ModelNotFound, match="no model.bin"):
        _build("transcribers", "faster-whisper", {"model": str(tmp_path)})


# --------------------------------------------------------------------------- ultralytics


def _frames(media, batch_size=16) -> list[Frame]:
    return [f for b in sample_frames(media.talk) for f in b]


def test_yolo_detections_are_structured_and_batched(media, video_settings):
    options = {**video_settings["ultralytics"], "confidence": 0.0001, "max_detections": 3, "batch_size": 2}
    det = _build("detectors", "ultralytics", options)
    calls: list[int] = []
    predict = det.model.predict

    def spy(images, **kw):
        calls.append(len(images))
        return predict(images, **kw)

    det.model.predict = spy
    try:
        frames = _frames(media)
        found = det.detect(frames)
    finally:
        det.model.predict = predict
    assert calls == [2, 1]  # 3 kept frames in batches of at most 2
    times = {f.t for f in frames}
    assert found, "a random model at confidence 1e-4 still proposes boxes"
    for d in found:
        assert isinstance(d, Detection) and d.t in times and d.label in det.model.names.values()
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 180 and d.confidence >= 0.0001
    assert max(sum(1 for d in found if d.t == t) for t in times) <= 3


def test_yolo_class_filter(media, video_settings):
    det = _build(
        "detectors",
        "ultralytics",
        {**video_settings["ultralytics"], "classes": ["bottle"], "confidence": 0.0001},
    )
    assert {d.label for d in det.detect(_frames(media))} <= {"bottle"}
    with pytest.raises(ConfigError, match="not labels"):
        _build("detectors", "ultralytics", {**video_settings["ultralytics"], "classes": ["unicorn"]})


def test_yolo_missing_weights_and_default_name(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        _build("detectors", "ultralytics", {"model": str(tmp_path / "nope.pt")})
    with pytest.raises(ModelNotFound, match="does not exist.*existing local file"):
        _build("detectors", "ultralytics", {})  # yolo11n.pt by name: never downloaded


def test_yolo_not_a_model_file(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotFound, match="cannot load model"):
        _build("detectors", "ultralytics", {"model": str(bad)})


# --------------------------------------------------------------------------- OCR


def _frame(text: str, size=(640, 360), t=1.0) -> Frame:
    return Frame(t=t, index=0, image=render_scene(Scene(1.0, text), *size))


def test_rapidocr_reads_english_exactly():
    ocr = _build("ocr_engines", "rapidocr", {})
    reads = ocr.read([_frame("DISCOUNT", t=2.5), _frame("", t=3.0)])
    assert [(r.t, r.text) for r in reads] == [(2.5, "DISCOUNT")]
    r = reads[0]
    assert isinstance(r, OcrText) and r.confidence > 0.8 and r.engine == "rapidocr" and r.hangul_ratio == 0.0
    x1, y1, x2, y2 = r.box
    assert 150 < x1 < x2 < 490 and 100 < y1 < y2 < 260  # centred text


def test_rapidocr_model_path_that_does_not_exist(tmp_path):
    from stageflow.errors import BadInput

    with pytest.raises(BadInput, match="rec_model_path .* does not exist"):
        _build("ocr_engines", "rapidocr", {"rec_model_path": str(tmp_path / "korean_rec.onnx")})


def test_tesseract_reads_korean_exactly(media):
    ocr = _build("ocr_engines", "tesseract", {})
    frames = [f for b in sample_frames(media.korean) for f in b]
    reads = ocr.read(frames)
    assert [r.text for r in reads] == ["안녕하세요"]
    assert reads[0].hangul_ratio == 1.0 and reads[0].engine == "tesseract" and reads[0].t == 0.0


def test_tesseract_missing_language_data():
    from stageflow.errors import BadInput

    with pytest.raises(BadInput, match="tesseract-ocr-xyz"):
        _build("ocr_engines", "tesseract", {"languages": "xyz"})


def test_onnx_detector_matches_ultralytics(media, models, video_settings, tmp_path):
    pytest.importorskip("onnx", reason="exporting to ONNX needs the onnx package (pip install onnx)")
    import shutil

    from ultralytics import YOLO

    pt = shutil.copyfile(models["yolo"], tmp_path / "yolo.pt")
    onnx_path = YOLO(str(pt)).export(format="onnx", imgsz=320, dynamic=True, simplify=False)
    options = {**video_settings["ultralytics"], "confidence": 0.0001, "max_detections": 3}
    frames = _frames(media)
    by_onnx = _build("detectors", "onnx", {**options, "model": onnx_path}).detect(frames)
    by_torch = _build("detectors", "ultralytics", options).detect(frames)
    assert [(d.t, d.label) for d in by_onnx] == [(d.t, d.label) for d in by_torch]
    for a, b in zip(by_onnx, by_torch, strict=True):
        assert a.box == pytest.approx(b.box, abs=2.0)


def test_whisper_language_forced_or_detected(media, video_settings):
    tr = _build("transcribers", "faster-whisper", video_settings["faster-whisper"])
    audio = decode_audio(media.audio_only)
    assert tr.transcribe(audio, "ko").language == "ko"
    from stageflow.video.synthetic import whisper_languages

    assert tr.transcribe(audio).language in whisper_languages()  # auto: one of Whisper's 100 codes
