"""Decoding and sampling on generated videos: audio format, the sharpness and difference gates,
batches, and every unreadable-file case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stageflow.video.decode import (
    MediaError,
    SamplingConfig,
    SamplingStats,
    decode_audio,
    difference_hash,
    laplacian_variance,
    probe,
    sample_frames,
)


def test_probe_reports_streams_and_duration(media):
    info = probe(media.talk)
    assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, 320, 180)
    assert info.duration_s == pytest.approx(6.0, abs=0.2)
    assert probe(media.silent).has_audio is False
    only = probe(media.audio_only)
    assert (only.has_video, only.has_audio) == (False, True)


def test_audio_is_16k_mono_float32(media):
    audio = decode_audio(media.talk)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(6.0, abs=0.1)
    assert 0.05 < float(np.abs(audio).max()) <= 1.0  # speech is there, and scaled to [-1, 1]
    assert decode_audio(media.silent).size == 0


def test_sampling_keeps_one_sharp_frame_per_scene(media):
    stats = SamplingStats()
    frames = [f for batch in sample_frames(media.talk, SamplingConfig(), stats) for f in batch]
    assert stats.decoded == 60  # every frame decoded, sequentially
    assert stats.kept == len(frames) == 3  # three still scenes, duplicates rejected
    assert stats.duplicate > 0
    # frames 20-24 (t=2.0-2.4 s) are blurred: the second scene is kept from its first sharp frame
    # one candidate per second after each kept or duplicate frame: 3.5 is a duplicate, 4.5 is new
    assert [f.t for f in frames] == [0.0, 2.5, 4.5]
    assert stats.blurry == 5
    assert all(f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert stats.kept <= stats.decoded / 15


def test_frames_come_in_bounded_batches(media):
    cfg = SamplingConfig(interval_s=0.1, min_hash_distance=0, min_scene_diff=0, batch_size=4)
    sizes = [len(b) for b in sample_frames(media.talk, cfg)]
    assert max(sizes) == 4 and sum(sizes) == 55 and len(sizes) == 14  # 60 decoded - 5 blurred


def test_sharpness_and_hash_primitives():
    rng = np.random.default_rng(0)
    sharp = (rng.random((90, 160)) * 255).astype(np.uint8)
    flat = np.full((90, 160), 128, np.uint8)
    assert laplacian_variance(sharp) > 1000 > laplacian_variance(flat) == 0
    assert difference_hash(sharp) == difference_hash(sharp.copy())
    assert difference_hash(sharp) != difference_hash(sharp[:, ::-1].copy())


def test_audio_only_file_has_no_frames(media):
    stats = SamplingStats()
    assert list(sample_frames(media.audio_only, stats=stats)) == []
    assert stats.decoded == 0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "corrupt or truncated"),
        ("empty", "empty file (0 bytes)"),
        ("unsupported", "unsupported container '.avi'"),
    ],
)
def test_unreadable_files_raise_media_error(media, name, reason):
    path: Path = getattr(media, name)
    with pytest.raises(MediaError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        probe(path)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "nope.mp4")
