"""Media work on a decoded job: decode to disk, transcribe, look (detection + OCR).

``decode_job`` writes a job directory: ``audio.npy`` (16 kHz mono float32), one JPEG per kept frame
and ``job.json`` (the :class:`~stageflow.video.pipeline.records.DecodedJob` record), so inference can
run in-process or on a GPU worker that sees the same storage. ``look`` loads kept frames batch by
batch, so memory is bounded by the batch size, never by the video's length. The pipeline's steps
(:mod:`stageflow.video.pipeline.steps`) call these; no Prefect here; backends arrive already built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stageflow.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_import("numpy")  # only the functions need it: a base install imports this module

from stageflow.stages import Detection, Frame, OcrText, Segment, Transcript, Word
from stageflow.video.decode import (
    SamplingConfig,
    SamplingStats,
    decode_audio,
    probe,
    sample_frames,
)
from stageflow.video.ocrtext import merge
from stageflow.video.pipeline.records import DecodedJob, KeptFrame
from stageflow.video.regions import RegionCache, read_regions


def decode_job(
    path: Path,
    workdir: Path,
    sampling: SamplingConfig | None = None,
    *,
    video_id: str = "",
    source: str = "file",
    title: str = "",
) -> DecodedJob:
    """Decode ``path`` into ``workdir``: audio, kept frames (JPEG q95) and job.json."""
    from PIL import Image

    info = probe(path)
    workdir.mkdir(parents=True, exist_ok=True)
    job = DecodedJob(
        video_id=video_id or path.stem,
        source=source,
        title=title or path.stem,
        path=str(path),
        workdir=str(workdir),
        info=info,
    )
    if info.has_audio:
        audio = decode_audio(path)
        np.save(workdir / "audio.npy", audio)
        job.audio_file = "audio.npy"
    stats = SamplingStats()
    if info.has_video:
        for batch in sample_frames(path, sampling, stats):
            for frame in batch:
                name = f"frame-{frame.index:06d}.jpg"
                Image.fromarray(frame.image).save(workdir / name, quality=95)
                steady = frame.index in stats.steady
                job.frames.append(
                    KeptFrame(
                        t=frame.t, index=frame.index, sharpness=frame.sharpness, file=name, steady=steady
                    )
                )
    job.frames_decoded, job.frames_kept = stats.decoded, stats.kept
    job.save()
    return job


def load_audio(job: DecodedJob) -> np.ndarray:
    if not job.audio_file:
        return np.zeros(0, np.float32)
    return np.load(Path(job.workdir) / job.audio_file)


def frame_batches(job: DecodedJob, batch_size: int) -> Iterator[list[Frame]]:
    """Kept frames loaded from disk ``batch_size`` at a time."""
    from PIL import Image

    for start in range(0, len(job.frames), batch_size):
        batch = []
        for kept in job.frames[start : start + batch_size]:
            with Image.open(Path(job.workdir) / kept.file) as img:
                batch.append(Frame(kept.t, kept.index, np.asarray(img.convert("RGB")), kept.sharpness))
        yield batch


@dataclass
class Backends:
    """Built backends for one run (None / empty: the stage is skipped)."""

    transcriber: Any = None
    detector: Any = None
    ocr: Sequence[Any] = ()
    language: str | None = None
    text_regions: Any = None  # a TextDetector: OCR engines then read its boxes' crops (regions.py)


def transcribe(job: DecodedJob, backends: Backends, language: str | None = None) -> Transcript | None:
    """The job's transcript in ``language`` (default: the run's ``[video] language``)."""
    if backends.transcriber is None or not job.info.has_audio:
        return None
    transcript = backends.transcriber.transcribe(load_audio(job), language or backends.language)
    return clamp(transcript, job.info.duration_s) if job.info.duration_s > 0 else transcript


def clamp(transcript: Transcript, duration_s: float) -> Transcript:
    """Times clamped to the video's duration (decoded AAC runs a few ms past the container's end)."""

    def c(t: float) -> float:
        return min(t, duration_s)

    segments = tuple(
        Segment(
            c(s.start),
            c(s.end),
            s.text,
            tuple(Word(c(w.start), c(w.end), w.text, w.probability) for w in s.words),
        )
        for s in transcript.segments
    )
    return Transcript(transcript.language, min(transcript.duration_s, duration_s), segments)


def look(
    job: DecodedJob, backends: Backends, batch_size: int, on_batch: Callable[[int], None] | None = None
) -> tuple[list[Detection], list[OcrText], int, int]:
    """Detection and OCR over kept frames, batch by batch; returns (detections, ocr, batches, max batch).

    Scene frames are always read; a steady frame (a repeat kept in a static shot) only when the scene
    frame it repeats showed text or objects, so a caption's whole window is covered without reading
    every second of a static shot that shows nothing. Region OCR keeps one :class:`RegionCache` for the
    whole video: a steady frame may repeat its scene frame, a scene frame the scene before it, and a
    repeat reuses the boxes and the unchanged crops' reads instead of detecting and recognising again."""
    detections: list[Detection] = []
    by_region = [e for e in backends.ocr if backends.text_regions is not None and hasattr(e, "recognise")]
    whole = [e for e in backends.ocr if e not in by_region]
    reads: list[list[OcrText]] = [[] for _ in range(len(whole) + 1)]
    batches = max_batch = 0
    if backends.detector is None and not backends.ocr:
        return detections, [], 0, 0
    steady = {f.index for f in job.frames if f.steady}

    cache = RegionCache()  # boxes and reads per frame, reused by frames that repeat them
    refs: dict[int, int] = {}  # frame index -> the frame it may repeat (regions.read_regions)

    def run(frames: list[Frame]) -> set[int]:
        """Detection and OCR of ``frames``; the indexes of the frames that showed something."""
        if not frames:
            return set()
        times: set[float] = set()
        if backends.detector is not None:
            found = backends.detector.detect(frames)
            detections.extend(found)
            times.update(d.t for d in found)
        if by_region:
            got = read_regions(frames, backends.text_regions, by_region, refs=refs, cache=cache)
            reads[0].extend(got)
            times.update(o.t for o in got)
        for i, engine in enumerate(whole, start=1):
            got = engine.read(frames)
            reads[i].extend(got)
            times.update(o.t for o in got)
        return {f.index for f in frames if f.t in times}

    anchor: int | None = None  # the latest scene frame's index
    previous: int | None = None  # the scene frame before the current one
    shown: set[int] = set()  # scene frames that showed text or objects
    for batch in frame_batches(job, batch_size):
        batches += 1
        max_batch = max(max_batch, len(batch))
        scenes = [f for f in batch if f.index not in steady]
        for frame in scenes:  # a scene frame may still show the previous one's text regions
            if previous is not None:
                refs[frame.index] = previous
            previous = frame.index
        shown |= run(scenes)
        repeats = []
        for frame in batch:  # in time order: a steady frame repeats the scene frame before it
            if frame.index not in steady:
                anchor = frame.index
            elif anchor is not None and anchor in shown:
                repeats.append(frame)
                refs[frame.index] = anchor  # its text most likely sits in the same boxes
        run(repeats)
        if on_batch is not None:
            on_batch(len(batch))
    detections.sort(key=lambda d: d.t)
    return detections, merge(reads), batches, max_batch
