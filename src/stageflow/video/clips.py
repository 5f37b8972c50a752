"""Reel-ready clips and thumbnails with PyAV: for a time range, the range +- padding re-encoded as
H.264/AAC MP4 (optionally cropped to 9:16 around the evidence boxes), and the sharpest kept frame in
the range as a JPEG.

The clip stage part 2 calls per candidate. A clip decodes from the keyframe before the range (one
seek per clip, then sequential); it never modifies the source video. Every encoded video frame gets
its pts in the output stream's own time base (1/fps), so the video stream lasts as long as the audio.
"""

from __future__ import annotations

import bisect
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from stageflow.errors import BadInput
from stageflow.video.decode import MediaError, _open, probe
from stageflow.video.job import DecodedJob, KeptFrame


@dataclass(frozen=True)
class Clip:
    path: str
    start: float
    end: float
    width: int
    height: int
    has_audio: bool


@dataclass(frozen=True)
class Thumbnail:
    path: str
    t: float
    sharpness: float


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CropPath:
    """Where a 9:16 crop window sits over time: the window's left edge follows the evidence boxes
    (caption or detected object), linearly between the times they were seen, clamped to the frame.
    With no boxes it is a centre crop."""

    frame_w: int
    crop_w: int
    times: tuple[float, ...] = ()
    lefts: tuple[float, ...] = ()

    @classmethod
    def from_boxes(cls, frame_w: int, crop_w: int, focus: Sequence[tuple[float, Box]]) -> CropPath:
        by_t: dict[float, list[Box]] = {}
        for t, box in focus:
            by_t.setdefault(round(float(t), 3), []).append(box)
        times, lefts = [], []
        for t in sorted(by_t):
            boxes = by_t[t]
            x0, x1 = min(b[0] for b in boxes), max(b[2] for b in boxes)
            if x1 - x0 > crop_w:  # the boxes together are wider than the window: follow the largest
                big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
                x0, x1 = big[0], big[2]
            times.append(t)
            lefts.append(cls._clamp((x0 + x1) / 2 - crop_w / 2, frame_w, crop_w))
        return cls(frame_w, crop_w, tuple(times), tuple(lefts))

    @staticmethod
    def _clamp(left: float, frame_w: int, crop_w: int) -> float:
        return min(max(0.0, left), float(frame_w - crop_w))

    def left(self, t: float) -> int:
        """The crop window's left edge (an even pixel column) at time ``t``."""
        if not self.times:
            return (self.frame_w - self.crop_w) // 2 // 2 * 2
        i = bisect.bisect_left(self.times, t)
        if i == 0:
            x = self.lefts[0]
        elif i == len(self.times):
            x = self.lefts[-1]
        else:
            t0, t1 = self.times[i - 1], self.times[i]
            x = self.lefts[i - 1] + (self.lefts[i] - self.lefts[i - 1]) * (t - t0) / (t1 - t0)
        return int(self._clamp(x, self.frame_w, self.crop_w)) // 2 * 2


def cut_clip(
    src: Path,
    start: float,
    end: float,
    dest: Path,
    *,
    padding_s: float = 1.5,
    vertical: bool = False,
    height: int = 1280,
    fps: int | None = None,
    focus: Sequence[tuple[float, Box]] = (),
) -> Clip:
    """Encode ``[start - padding, end + padding]`` (clamped to the video) of ``src`` to ``dest``.

    ``vertical`` crops a 9:16 window; ``focus`` lists ``(t, (x1, y1, x2, y2))`` evidence boxes in
    source pixels (OCR text, detections) that the window follows, so the caption or object stays in
    frame; without them the crop is centred."""
    import av

    if end <= start:
        raise BadInput(f"clip {src}: end {end} must be after start {start}")
    info = probe(src)
    if not info.has_video:
        raise MediaError(f"clip {src}: no video track")
    t0 = max(0.0, start - padding_s)
    t1 = min(info.duration_s or end + padding_s, end + padding_s)
    if t1 <= t0:
        raise BadInput(f"clip {src}: range {start}-{end} is outside the video (0-{info.duration_s} s)")
    rate = fps or round(info.fps) or 25
    if vertical:
        out_h = _even(min(height, info.height))
        out_w = _even(out_h * 9 / 16)
        crop_w = _even(min(info.width, info.height * 9 / 16))
    else:
        out_w, out_h, crop_w = _even(info.width), _even(info.height), 0
    path = CropPath.from_boxes(info.width, crop_w, focus) if crop_w else None
    frame_tb = Fraction(1, rate)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w") as out:
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = out_w, out_h, "yuv420p"
        vout.codec_context.time_base = frame_tb
        vout.options = {"preset": "veryfast", "crf": "20"}
        aout = out.add_stream("aac", rate=48000) if info.has_audio else None
        if aout is not None:
            aout.layout = "stereo"
        with _open(src) as inp:
            stream = inp.streams.video[0]
            inp.seek(int(t0 * 1_000_000), any_frame=False)
            n = 0
            for frame in inp.decode(stream):
                t = float(frame.time or 0.0)
                if t < t0 - 1e-6:
                    continue
                if t > t1:
                    break
                if path is not None:
                    rgb = frame.to_ndarray(format="rgb24")
                    x = path.left(t)
                    frame = av.VideoFrame.from_ndarray(rgb[:, x : x + crop_w].copy(), format="rgb24")
                vf = frame.reformat(width=out_w, height=out_h, format="yuv420p")
                # frame numbers are only a timeline in the stream's own time base (1/fps)
                vf.pts, vf.time_base = n, frame_tb
                n += 1
                for packet in vout.encode(vf):
                    out.mux(packet)
            for packet in vout.encode():
                out.mux(packet)
        if aout is not None:
            with _open(src) as inp:
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
                written = 0
                for frame in inp.decode(inp.streams.audio[0]):
                    t = float(frame.time or 0.0)
                    if t + frame.samples / frame.sample_rate < t0:
                        continue
                    if t > t1:
                        break
                    for rf in resampler.resample(frame):
                        rf.pts = written
                        written += rf.samples
                        for packet in aout.encode(rf):
                            out.mux(packet)
                for packet in aout.encode():
                    out.mux(packet)
    return Clip(str(dest), round(t0, 3), round(t1, 3), out_w, out_h, aout is not None)


def pick_thumbnail(
    frames: list[KeptFrame], start: float, end: float, text_times: Collection[float] = ()
) -> KeptFrame | None:
    """The sharpest kept frame in ``[start, end]`` that shows text (a time in ``text_times``), else
    the sharpest in the range; else the kept frame nearest the range's middle."""
    inside = [f for f in frames if start <= f.t <= end]
    with_text = [f for f in inside if f.t in set(text_times)]
    if with_text or inside:
        return max(with_text or inside, key=lambda f: f.sharpness)
    if not frames:
        return None
    middle = (start + end) / 2
    return min(frames, key=lambda f: abs(f.t - middle))


def thumbnail(
    job: DecodedJob, start: float, end: float, dest: Path, text_times: Collection[float] = ()
) -> Thumbnail:
    """Copy the chosen kept frame's JPEG to ``dest`` (see :func:`pick_thumbnail`)."""
    chosen = pick_thumbnail(job.frames, start, end, text_times)
    if chosen is None:
        raise MediaError(f"thumbnail {job.path}: no kept frames (audio-only or all frames rejected)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(job.workdir) / chosen.file, dest)
    return Thumbnail(str(dest), chosen.t, chosen.sharpness)
