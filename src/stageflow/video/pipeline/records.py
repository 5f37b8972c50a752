"""The typed records of the video pipeline, one model per record kind from input to sink.

``VideoRef`` (an input) -> ``Fetched`` (a local file and its store key) -> ``DecodedJob`` (audio +
kept frames on disk) -> ``Inference`` (transcript, detections, OCR: the media stages' dataclasses) ->
``VideoRecord`` (what ``--json`` prints and the store keeps, with its ``candidates``; its items are
the analysis contract's models, which part 2 reads). The same models travel through the
in-process run, the Prefect tasks (which take and return them) and the GPU child flow (whose JSON
parameters Prefect validates back into them). No Prefect here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.contracts.analysis import DetectedObject, OcrRead, OnScreenText, TranscriptLine
from stageflow.stages import Detection, OcrText, Transcript
from stageflow.video.decode import MediaInfo
from stageflow.video.regions import TextSpan

JOB_FILE = "job.json"


class _Record(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=False, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form (what the store, job.json and the child flow's parameters hold)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return cls.model_validate(data)


class VideoRef(_Record):
    """One video to analyse, or an input that failed to resolve (``error`` set)."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    title: str
    location: str  # a local path or a URL
    error: str | None = None
    channel: str | None = None  # the feed's channel id, when known
    language: str | None = None  # spoken language from the channels file; wins over [video] language
    duration_s: float | None = None  # the feed's duration, when it gives one
    skip_shorts: bool = False  # from a feed that skips Shorts: decided again on the fetched file's duration


class Fetched(_Record):
    """A video on local disk: ``ref`` filled from the downloader's metadata, the file's SHA-256 and
    the store key of its part-1 result (id | content | config)."""

    ref: VideoRef
    path: str
    sha256: str
    key: str
    duration_s: float | None = None  # the feed's, else the downloader's metadata (yt-dlp), else probed
    short: bool = False  # the ref skips Shorts and the video is one (<= 60 s)


class KeptFrame(_Record):
    model_config = ConfigDict(frozen=True)

    t: float
    index: int
    sharpness: float
    file: str  # relative to the job directory
    steady: bool = False  # a repeat of the last scene frame, kept for evidence in a static shot


class DecodedJob(_Record):
    """A decoded video on disk: ``audio.npy`` (16 kHz mono float32), one JPEG per kept frame and
    ``job.json`` (this record) in ``workdir``."""

    video_id: str
    source: str
    title: str
    path: str
    workdir: str
    info: MediaInfo
    frames_decoded: int = 0
    frames_kept: int = 0
    frames: list[KeptFrame] = Field(default_factory=list)
    audio_file: str | None = None

    @classmethod
    def load(cls, workdir: Path) -> DecodedJob:
        return cls.model_validate_json((workdir / JOB_FILE).read_text(encoding="utf-8"))

    def save(self) -> None:
        (Path(self.workdir) / JOB_FILE).write_text(self.model_dump_json(indent=1), encoding="utf-8")


class Inference(_Record):
    """What the models saw in one decoded job; ``texts`` is ``ocr`` folded per on-screen interval;
    ``timings_s`` the wall time of the transcribe and look stages."""

    transcript: Transcript | None = None
    detections: list[Detection] = Field(default_factory=list)
    ocr: list[OcrText] = Field(default_factory=list)
    batches: int = 0
    max_batch: int = 0
    texts: list[TextSpan] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)


class VideoRecord(_Record):
    """One video's result: printed by ``--json``, stored, read by part 2 (candidates) and the sinks.
    A failed video has ``error`` (one line) and empty lists. Its items are the analysis contract's
    models (:mod:`stageflow.contracts.analysis`), so part 2 reads them as they are; :meth:`of` is
    where the media stages' dataclasses become them."""

    id: str
    input: str = ""  # the path or URL the user gave
    source: str = ""
    title: str = ""
    duration_s: float | None = None
    frames_decoded: int = 0
    frames_kept: int = 0
    transcript: list[TranscriptLine] = Field(default_factory=list)
    detections: list[DetectedObject] = Field(default_factory=list)
    ocr: list[OcrRead] = Field(default_factory=list)
    texts: list[OnScreenText] = Field(default_factory=list)
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    skipped: str | None = None  # why the video was not analysed (a Short from a feed that skips them)

    @classmethod
    def empty(cls, ref: VideoRef, error: str | None = None) -> VideoRecord:
        return cls(
            id=ref.id,
            input=ref.location,
            source=ref.source,
            title=ref.title,
            error=error if error is not None else ref.error,
        )

    @classmethod
    def of(cls, ref: VideoRef, job: DecodedJob, result: Inference) -> VideoRecord:
        segments = result.transcript.segments if result.transcript else ()
        return cls(
            id=ref.id,
            input=ref.location,
            source=ref.source,
            title=ref.title,
            duration_s=job.info.duration_s,
            frames_decoded=job.frames_decoded,
            frames_kept=job.frames_kept,
            transcript=[TranscriptLine.of(s) for s in segments],
            detections=[DetectedObject.of(d) for d in result.detections],
            ocr=[OcrRead.of(o) for o in result.ocr],
            texts=[OnScreenText.of(x) for x in result.texts],
        )


class StoredResult(_Record):
    """A video's part-1 result as the store keeps it (table ``video_analyses``, keyed by ``key``)."""

    record: VideoRecord
    sha256: str
    job: DecodedJob | None = None
    inference: Inference | None = None

    def dump(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
