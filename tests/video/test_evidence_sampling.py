"""Sampling that keeps evidence: a static shot keeps a steady frame every 2 s, inference reads those
only while the shot shows text, so a caption on screen 2-12 s is read across its whole window; the
thumbnail of a range comes from inside it with the text visible."""

from __future__ import annotations

import numpy as np
import pytest

from stageflow.video import synthetic as s
from stageflow.video.clips import pick_thumbnail, thumbnail
from stageflow.video.decode import SamplingConfig
from stageflow.video.job import Backends, KeptFrame, decode_job, look
from stageflow.video.regions import spans


def _texture(seed: int, size=(640, 360)) -> np.ndarray:
    """A photo-like background (colour blobs + grain): sharp enough to keep, no text in it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(40, 220, (size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)).astype(np.int16)
    grain = rng.integers(-40, 40, (size[1], size[0], 1))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def static_caption(tmp_path_factory):
    """0-2 s and 12-18 s: static shots with nothing to read; 2-12 s: a static caption shot."""
    import av
    from PIL import Image, ImageDraw

    caption = Image.fromarray(_texture(2))
    draw = ImageDraw.Draw(caption)
    draw.rectangle((150, 140, 490, 220), fill=(255, 255, 255))
    draw.text((170, 150), "DOKDO TONER", fill=(0, 0, 0), font=s._font(None, "DOKDO TONER", 48))
    shots = [(2.0, _texture(1)), (10.0, np.asarray(caption)), (6.0, _texture(3))]
    dest = tmp_path_factory.mktemp("static") / "static.mp4"
    with av.open(str(dest), "w") as out:
        st = out.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
        for seconds, rgb in shots:
            for _ in range(round(seconds * 10)):
                for p in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(p)
        for p in st.encode():
            out.mux(p)
    return dest


@pytest.fixture(scope="module")
def rapid():
    from stageflow.plugins.ocr import RapidOcrConfig, RapidOcrEngine

    return RapidOcrEngine(RapidOcrConfig())


class Counting:
    """The real rapidocr engine, counting the frames it is asked to look at."""

    def __init__(self, engine):
        self.engine, self.name, self.filter, self.seen = engine, engine.name, engine.filter, []
        self.crops = self.boxes = 0

    def detect_boxes(self, image):
        self.seen.append(image.shape)
        boxes = self.engine.detect_boxes(image)
        self.boxes += len(boxes)
        return boxes

    def recognise(self, crops):
        self.crops += len(crops)
        return self.engine.recognise(crops)


def test_a_static_caption_is_read_across_its_window(static_caption, rapid, tmp_path):
    job = decode_job(static_caption, tmp_path / "job", SamplingConfig(interval_s=1.0))
    steady = [f.t for f in job.frames if f.steady]
    scenes = [f.t for f in job.frames if not f.steady]
    assert scenes == [0.0, 2.0, 12.0]
    assert steady == [4.0, 6.0, 8.0, 10.0, 14.0, 16.0]  # every 2 s of each static shot
    counting = Counting(rapid)
    _, ocr, _, _ = look(job, Backends(ocr=[counting], text_regions=counting), batch_size=4)
    assert sorted({o.t for o in ocr if o.text == "DOKDO TONER"}) == [2.0, 4.0, 6.0, 8.0, 10.0]
    # text boxes are detected on the 3 scene frames only: the caption's steady frames reuse its
    # scene frame's boxes, and the blank shots' steady frames (14, 16 s) are never read
    assert len(counting.seen) == 3
    # and each box is recognised once: the caption's steady frames repeat the same pixels, so they
    # reuse its read (with their own times)
    assert 1 <= counting.crops == counting.boxes
    [span] = spans(ocr)
    assert (span.text, span.first_t, span.last_t, span.frames) == ("DOKDO TONER", 2.0, 10.0, 5)
    # a range late in the caption's window: its thumbnail is a frame inside it that shows the text
    thumb = thumbnail(job, 9.0, 13.5, tmp_path / "t.jpg", text_times={o.t for o in ocr})
    assert thumb.t == 10.0


def test_no_steady_frames_when_switched_off(static_caption, tmp_path):
    job = decode_job(static_caption, tmp_path / "job", SamplingConfig(evidence_interval_s=0))
    assert [f.t for f in job.frames] == [0.0, 2.0, 12.0]


def test_pick_thumbnail_prefers_a_frame_with_text_over_a_sharper_one():
    frames = [
        KeptFrame(t=1.0, index=10, sharpness=500.0, file="a"),
        KeptFrame(t=2.0, index=20, sharpness=90.0, file="b"),
        KeptFrame(t=9.0, index=90, sharpness=999.0, file="c"),
    ]
    assert pick_thumbnail(frames, 0.5, 3.0, {2.0}).file == "b"
    assert pick_thumbnail(frames, 0.5, 3.0).file == "a"


def test_a_one_frame_video_and_a_caption_on_screen_for_the_whole_video(rapid, tmp_path):
    one = s.make_video(tmp_path / "one.mp4", [s.Scene(0.1, "SALE 50")], size=(640, 360))
    job = decode_job(one, tmp_path / "j1")
    assert [f.t for f in job.frames] == [0.0]
    _, ocr, _, _ = look(job, Backends(ocr=[rapid], text_regions=rapid), batch_size=4)
    assert [o.text for o in ocr] == ["SALE 50"]
    whole = s.make_video(tmp_path / "whole.mp4", [s.Scene(9.0, "SALE 50")], size=(640, 360))
    job = decode_job(whole, tmp_path / "j2")
    _, ocr, _, _ = look(job, Backends(ocr=[rapid], text_regions=rapid), batch_size=4)
    [span] = spans(ocr)
    assert (span.text, span.first_t, span.last_t) == ("SALE 50", 0.0, 8.0)  # its whole window
