"""Clips and thumbnails: range +- padding, H.264/AAC whose video stream plays as long as its audio,
9:16 crop that follows the evidence boxes, sharpest kept frame."""

from __future__ import annotations

import numpy as np
import pytest

from stageflow.errors import BadInput
from stageflow.video import synthetic as s
from stageflow.video.clips import CropPath, cut_clip, pick_thumbnail, thumbnail
from stageflow.video.decode import probe
from stageflow.video.job import KeptFrame, decode_job


def _codecs(path):
    import av

    with av.open(str(path)) as c:
        return sorted(s.codec_context.name for s in c.streams)


def _streams(path):
    """Per stream kind: the stream's own duration (what ``ffprobe -select_streams v:0 -show_entries
    stream=duration`` prints), and the video frames' timestamps."""
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], (c.streams.audio[0] if c.streams.audio else None)
        vdur = float(v.duration * v.time_base)
        adur = float(a.duration * a.time_base) if a is not None else None
        times = [float(f.time) for f in c.decode(v)]
    return vdur, adur, times


@pytest.fixture(scope="module")
def long_30fps(tmp_path_factory):
    """14 s at 30 fps with a (silent) audio track: long enough for the old pts-0 bug to fail."""
    root = tmp_path_factory.mktemp("long")
    audio = (np.sin(np.arange(16000 * 14) / 10) * 3000).astype(np.int16)
    return s.make_video(root / "long.mp4", [s.Scene(7.0, "ONE"), s.Scene(7.0, "TWO")], fps=30, audio=audio)


def test_a_12_s_clip_at_30_fps_has_a_video_stream_as_long_as_its_audio(long_30fps, tmp_path):
    clip = cut_clip(long_30fps, 1.0, 13.0, tmp_path / "long.mp4", padding_s=0.0)
    vdur, adur, times = _streams(tmp_path / "long.mp4")
    assert (clip.start, clip.end) == (1.0, 13.0)
    assert vdur == pytest.approx(12.0, abs=0.1) and adur == pytest.approx(12.0, abs=0.15)
    assert len(times) == pytest.approx(361, abs=2)
    steps = np.diff(times)
    assert times[0] == pytest.approx(0.0, abs=1e-3) and np.allclose(steps, 1 / 30, atol=1e-3)


def test_vertical_crop_follows_the_evidence_box(tmp_path):
    """A red square on the right for 0-2 s, on the left for 2-4 s: the 9:16 window goes with it."""
    import av

    src = tmp_path / "square.mp4"
    with av.open(str(src), "w") as out:
        st = out.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
        for i in range(40):
            rgb = np.full((360, 640, 3), 255, np.uint8)
            x = 500 if i < 20 else 60
            rgb[150:210, x : x + 80] = (255, 0, 0)
            for p in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    focus = [(0.5, (500, 150, 580, 210)), (1.9, (500, 150, 580, 210)), (2.0, (60, 150, 140, 210))]
    cut_clip(src, 0.0, 4.0, tmp_path / "reel.mp4", padding_s=0, vertical=True, height=360, focus=focus)
    with av.open(str(tmp_path / "reel.mp4")) as c:
        frames = {round(float(f.time), 1): f.to_ndarray(format="rgb24") for f in c.decode(video=0)}
    for t in (0.5, 1.5, 3.0, 3.5):
        mid = frames[t][180, frames[t].shape[1] // 2]
        assert mid[0] > 200 and mid[1] < 80, (t, mid)  # red stays in the middle of the reel
    centre = cut_clip(src, 0.0, 4.0, tmp_path / "blind.mp4", padding_s=0, vertical=True, height=360)
    assert centre.width == 202
    with av.open(str(tmp_path / "blind.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert not ((first[..., 0] > 200) & (first[..., 1] < 80)).any()  # a centre crop loses it


def test_crop_path_clamps_and_interpolates():
    path = CropPath.from_boxes(1280, 404, [(0.0, (1200, 0, 1280, 50)), (10.0, (0, 0, 40, 50))])
    assert path.left(0.0) == 876  # clamped to the right edge
    assert path.left(10.0) == 0 and path.left(20.0) == 0
    assert 0 < path.left(5.0) < 876
    wide = CropPath.from_boxes(1280, 404, [(0.0, (0, 0, 100, 50)), (0.0, (900, 0, 1250, 300))])
    assert wide.left(0.0) == (1075 - 202) // 2 * 2  # follows the largest box
    assert CropPath(1280, 404).left(3.0) == 438


def test_clip_is_the_padded_range_in_h264_aac(media, tmp_path):
    clip = cut_clip(media.talk, 2.0, 3.0, tmp_path / "clip.mp4", padding_s=0.5)
    assert (clip.start, clip.end, clip.width, clip.height, clip.has_audio) == (1.5, 3.5, 320, 180, True)
    info = probe(tmp_path / "clip.mp4")
    assert info.duration_s == pytest.approx(2.0, abs=0.15)
    vdur, adur, _ = _streams(tmp_path / "clip.mp4")
    assert vdur == pytest.approx(2.0, abs=0.15) and adur == pytest.approx(2.0, abs=0.15)
    assert _codecs(tmp_path / "clip.mp4") == ["aac", "h264"]


def test_vertical_clip_is_a_9_16_centre_crop_clamped_to_the_video(media, tmp_path):
    clip = cut_clip(media.talk, 5.0, 5.8, tmp_path / "reel.mp4", padding_s=1.0, vertical=True)
    assert (clip.start, clip.end) == (4.0, 6.0)
    info = probe(tmp_path / "reel.mp4")
    assert (info.width, info.height) == (100, 180) and info.width / info.height == pytest.approx(
        9 / 16, abs=0.01
    )


def test_clip_of_a_video_without_audio(media, tmp_path):
    clip = cut_clip(media.silent, 0.0, 1.0, tmp_path / "c.mp4", padding_s=0)
    assert not clip.has_audio and _codecs(tmp_path / "c.mp4") == ["h264"]


def test_clip_bad_ranges(media, tmp_path):
    with pytest.raises(BadInput, match="must be after start"):
        cut_clip(media.talk, 3.0, 2.0, tmp_path / "x.mp4")
    with pytest.raises(BadInput, match="outside the video"):
        cut_clip(media.talk, 60.0, 61.0, tmp_path / "x.mp4", padding_s=0)


def test_thumbnail_is_the_sharpest_kept_frame_in_range(media, tmp_path):
    job = decode_job(media.talk, tmp_path / "job")
    thumb = thumbnail(job, 2.0, 6.0, tmp_path / "thumb.jpg")
    best = max((f for f in job.frames if 2.0 <= f.t <= 6.0), key=lambda f: f.sharpness)
    assert (thumb.t, thumb.sharpness) == (best.t, best.sharpness)
    assert (tmp_path / "thumb.jpg").read_bytes() == (tmp_path / "job" / best.file).read_bytes()


def test_pick_thumbnail_outside_kept_frames():
    frames = [
        KeptFrame(t=0.0, index=0, sharpness=10.0, file="a"),
        KeptFrame(t=5.0, index=50, sharpness=99.0, file="b"),
    ]
    assert pick_thumbnail(frames, 0.0, 1.0).file == "a"
    assert pick_thumbnail(frames, 3.5, 4.0).file == "b"  # nearest to the range's middle
    assert pick_thumbnail([], 0, 1) is None


def test_evidence_boxes_are_in_source_pixels():
    from stageflow.video.decode import MediaInfo
    from stageflow.video.pipeline import DecodedJob, VideoRecord, evidence_boxes

    info = MediaInfo("x.mp4", 3.0, True, True, 2560, 1440)
    job = DecodedJob(video_id="v", source="file", title="", path="x.mp4", workdir="/tmp", info=info)
    record = VideoRecord.model_validate(
        {
            "id": "v",
            "ocr": [{"t": 1.0, "text": "a", "confidence": 1.0, "box": [10, 20, 30, 40]}],
            "detections": [{"t": 2.0, "label": "cup", "confidence": 1.0, "box": [0, 0, 64, 36]}],
        }
    )
    assert evidence_boxes(record, job, 1280) == [
        (1.0, (20.0, 40.0, 60.0, 80.0)),
        (2.0, (0.0, 0.0, 128.0, 72.0)),
    ]
