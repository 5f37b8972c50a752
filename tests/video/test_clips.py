"""Clips and thumbnails: range +- padding, H.264/AAC, 9:16 centre crop, sharpest kept frame."""

from __future__ import annotations

import pytest

from stageflow.errors import BadInput
from stageflow.video.clips import cut_clip, pick_thumbnail, thumbnail
from stageflow.video.decode import probe
from stageflow.video.job import KeptFrame, decode_job


def _codecs(path):
    import av

    with av.open(str(path)) as c:
        return sorted(s.codec_context.name for s in c.streams)


def test_clip_is_the_padded_range_in_h264_aac(media, tmp_path):
    clip = cut_clip(media.talk, 2.0, 3.0, tmp_path / "clip.mp4", padding_s=0.5)
    assert (clip.start, clip.end, clip.width, clip.height, clip.has_audio) == (1.5, 3.5, 320, 180, True)
    info = probe(tmp_path / "clip.mp4")
    assert info.duration_s == pytest.approx(2.0, abs=0.15)
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
    frames = [KeptFrame(0.0, 0, 10.0, "a"), KeptFrame(5.0, 50, 99.0, "b")]
    assert pick_thumbnail(frames, 0.0, 1.0).file == "a"
    assert pick_thumbnail(frames, 3.5, 4.0).file == "b"  # nearest to the range's middle
    assert pick_thumbnail([], 0, 1) is None
