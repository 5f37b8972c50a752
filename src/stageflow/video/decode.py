"""Decoding with PyAV: audio to 16 kHz mono float32, and frames decoded sequentially and sampled
(interval + sharpness gate + difference from the last kept frame).

Frames are never sampled by seeking (5x slower here): every frame is decoded once, in order, and
only the kept ones are converted to full RGB. Kept frames are handed out in batches (or written to a
job directory as JPEG) so memory stays bounded by the batch size, never by the video's length.
Every failure to read a file is a :class:`MediaError` whose message says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stageflow.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_import("numpy")  # only the functions need it: a base install imports this module

from stageflow.errors import BadInput
from stageflow.stages import Frame
from stageflow.video import VIDEO_SUFFIXES

AUDIO_RATE = 16000


class MediaError(BadInput):
    """A media file that cannot be decoded (missing, empty, corrupt, unsupported)."""


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass(frozen=True)
class SamplingConfig:
    """Frame sampling: at most one candidate per ``interval_s``; kept when its Laplacian variance
    (on a ``analysis_width``-wide grey copy) is >= ``min_sharpness`` and its 64-bit difference hash
    differs from the last kept frame's in >= ``min_hash_distance`` bits, or the mean absolute
    difference of 64x36 grey thumbnails is >= ``min_scene_diff`` grey levels (a scene change)."""

    interval_s: float = 1.0
    min_sharpness: float = 30.0
    min_hash_distance: int = 10
    min_scene_diff: float = 6.0
    analysis_width: int = 320
    max_side: int = 1280
    batch_size: int = 16
    # a static shot keeps a "steady" frame this often (0: never), so a caption on screen for a while is
    # seen across its whole window; inference reads a steady frame only when the scene frame it
    # repeats showed text or objects
    evidence_interval_s: float = 2.0


@dataclass
class SamplingStats:
    decoded: int = 0
    kept: int = 0
    blurry: int = 0
    duplicate: int = 0
    kept_times: list[float] = field(default_factory=list)
    steady: set[int] = field(default_factory=set)  # indexes of kept steady (repeat) frames


def check_file(path: Path) -> None:
    """Reject what PyAV should not even be asked to open, with the reason."""
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(
            f"{path}: unsupported container '{path.suffix or '(none)'}' "
            f"(supported: {', '.join(s[1:] for s in VIDEO_SUFFIXES)})"
        )


def _open(path: Path):  # noqa: ANN202 - av.container.InputContainer, imported lazily
    import av

    check_file(path)
    try:
        return av.open(str(path), "r")
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: not a readable video (corrupt or truncated?): {exc}") from None


def probe(path: Path) -> MediaInfo:
    """Streams and duration of ``path`` (raises MediaError when it holds neither audio nor video)."""
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(f"{path}: no audio or video track")
        duration = 0.0
        if container.duration:
            duration = container.duration / 1_000_000
        else:
            for stream in (video, audio):
                if stream is not None and stream.duration and stream.time_base:
                    duration = max(duration, float(stream.duration * stream.time_base))
        if video is not None and video.codec_context is None:  # bit-flipped/corrupt codec data
            raise MediaError(
                f"{path}: corrupt video stream (its codec data cannot be read); re-download or re-encode it"
            )
        fps = float(video.average_rate) if video is not None and video.average_rate else 0.0
        return MediaInfo(
            path=str(path),
            duration_s=round(duration, 3),
            has_video=video is not None,
            has_audio=audio is not None,
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
            fps=fps,
        )


def decode_audio(path: Path) -> np.ndarray:
    """The first audio track as 16 kHz mono float32 in [-1, 1]; empty when there is none."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise MediaError(f"{path}: audio track cannot be decoded: {exc}") from None
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low for blurred frames (the original's sharpness gate)."""
    g = gray.astype(np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def difference_hash(gray: np.ndarray) -> int:
    """64-bit dHash: sign of horizontal gradients on a 9x8 box-averaged grey image."""
    h, w = gray.shape
    ys = np.linspace(0, h, 9, dtype=int)
    xs = np.linspace(0, w, 10, dtype=int)
    small = np.array(
        [[gray[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean() for j in range(9)] for i in range(8)]
    )
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def thumbnail(gray: np.ndarray, width: int = 64, height: int = 36) -> np.ndarray:
    """A box-averaged grey thumbnail, for the scene-change test."""
    h, w = gray.shape
    ys = np.linspace(0, h, height + 1, dtype=int)
    xs = np.linspace(0, w, width + 1, dtype=int)
    rows = np.add.reduceat(gray.astype(np.float32), ys[:-1], axis=0) / np.diff(ys)[:, None]
    return np.add.reduceat(rows, xs[:-1], axis=1) / np.diff(xs)[None, :]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def sample_frames(
    path: Path, config: SamplingConfig | None = None, stats: SamplingStats | None = None
) -> Iterator[list[Frame]]:
    """Decode every frame in order; yield kept frames in batches of ``config.batch_size``."""
    import av

    cfg = config or SamplingConfig()
    st = stats if stats is not None else SamplingStats()
    with _open(path) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        next_t = 0.0
        last_hash: int | None = None
        last_thumb: np.ndarray | None = None
        last_kept_t = -1e9
        batch: list[Frame] = []
        try:
            for frame in container.decode(stream):
                index = st.decoded
                st.decoded += 1
                t = float(frame.time) if frame.time is not None else index / fps
                if t + 1e-6 < next_t:
                    continue
                aw = min(cfg.analysis_width, frame.width)
                ah = max(2, round(frame.height * aw / frame.width) // 2 * 2)
                gray = frame.reformat(width=aw, height=ah, format="gray").to_ndarray()
                sharp = laplacian_variance(gray)
                if sharp < cfg.min_sharpness:
                    st.blurry += 1
                    continue  # try the next frame for this interval
                dhash = difference_hash(gray)
                next_t = t + cfg.interval_s
                thumb = thumbnail(gray)
                repeat = False
                if last_hash is not None and last_thumb is not None:
                    moved = float(np.abs(thumb - last_thumb).mean())
                    if hamming(dhash, last_hash) < cfg.min_hash_distance and moved < cfg.min_scene_diff:
                        steady_due = (
                            cfg.evidence_interval_s > 0 and t - last_kept_t >= cfg.evidence_interval_s - 1e-6
                        )
                        if not steady_due:
                            st.duplicate += 1
                            continue
                        repeat = True
                if repeat:
                    st.steady.add(index)
                else:
                    last_hash, last_thumb = dhash, thumb
                last_kept_t = t
                scale = min(1.0, cfg.max_side / max(frame.width, frame.height))
                if scale < 1.0:
                    w = max(2, round(frame.width * scale) // 2 * 2)
                    h = max(2, round(frame.height * scale) // 2 * 2)
                    rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
                else:
                    rgb = frame.to_ndarray(format="rgb24")
                st.kept += 1
                st.kept_times.append(round(t, 3))
                batch.append(Frame(t=round(t, 3), index=index, image=rgb, sharpness=round(sharp, 1)))
                if len(batch) >= cfg.batch_size:
                    yield batch
                    batch = []
        except av.error.FFmpegError as exc:
            if st.decoded == 0:
                raise MediaError(f"{path}: video track cannot be decoded: {exc}") from None
            # a truncated tail: keep what decoded
        if batch:
            yield batch
