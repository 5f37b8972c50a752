"""Contracts of the analysis family: turning one video's evidence into product candidates.

Protocol: :class:`Analyzer` (two passes: ``find_ranges`` over the transcript, then ``candidate`` per
range). Data: the items of part 1's record (what ``stageflow analyze --json`` prints and the store
keeps, ``VideoRecord`` in :mod:`stageflow.video.pipeline.records`): :class:`TranscriptLine`,
:class:`DetectedObject`, :class:`OcrRead`, :class:`OnScreenText`, each defined once here and read by
the analysis as they are; the evidence of one video (:class:`VideoEvidence`, with them,
:class:`FrameIn` and :class:`InfluencerStats`), a stretch worth a candidate (:class:`TimeRange`), and
the candidate itself (:class:`Candidate` with :class:`RangeEvidence` and, after commerce, a
:class:`~stageflow.contracts.commerce.CommerceMatch`).

The record items are the documented dict shapes (optional boxes, default confidences), not the media
stages' dataclasses (:mod:`stageflow.contracts.media`, which also carry words, the engine and pixel
boxes as given): each item's ``of`` converts from its dataclass, and an analyzer can be fed a saved
``--json`` file without the media backends. Their names before they were the record's too
(``SegmentIn``, ``DetectionIn``, ``OcrIn``, ``TextIn``) remain as aliases.

Lifecycle: an analyzer MAY define ``preflight(self) -> None`` (raise a stageflow error to refuse
before any work, e.g. a missing API key) and ``close(self) -> None``; see
:func:`stageflow.contracts.preflight` / :func:`stageflow.contracts.close`. Not required members.

This module only defines data; it never calls a model, a service or the store. Bottom floor:
standard library and pydantic only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WrapSerializer,
    field_validator,
)

from stageflow.contracts import media as _media
from stageflow.contracts.commerce import CommerceMatch

__all__ = [
    "NEEDS_CHECK",
    "Analyzer",
    "Candidate",
    "CommerceMatch",
    "DetectedObject",
    "DetectionIn",
    "FrameIn",
    "InfluencerStats",
    "OcrIn",
    "OcrRead",
    "OnScreenText",
    "RangeEvidence",
    "SegmentIn",
    "TextIn",
    "TimeRange",
    "TranscriptLine",
    "VideoEvidence",
    "candidate_id",
    "fold_reads",
]

NEEDS_CHECK = "확인 필요"  # an unclear product name: shown to reviewers, never invented


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_Xyxy = tuple[float, float, float, float]


def _no_box(value: Any) -> Any:
    """``[]`` (how part 1's records once wrote a read without a box) reads as no box."""
    return None if isinstance(value, list | tuple) and not value else value


def _box_out(value: _Xyxy | None, handler: SerializerFunctionWrapHandler) -> Any:
    """No box writes as ``[]``, as part 1's records always have."""
    return [] if value is None else handler(value)


# A frame box ``(x1, y1, x2, y2)`` in pixels of the kept frame, or none: ``[]`` or a missing key
#: reads as ``None``, which writes back as ``[]`` (the record shape of part 1's ``--json``).
_Box = Annotated[_Xyxy | None, BeforeValidator(_no_box), WrapSerializer(_box_out)]


# --------------------------------------------------------------------------- part 1's record items
# One model per item of part 1's record (``stageflow analyze --json``, the store's rows): what the
# video pipeline writes (``VideoRecord``) is what the analysis reads (``VideoEvidence``). Built from
# the media stages' dataclasses by each ``of`` (they also carry words, the engine, the Hangul share).


class TranscriptLine(_Model):
    """One transcript line; times in seconds on the video's timeline."""

    start: float
    end: float
    text: str = ""

    @classmethod
    def of(cls, segment: _media.Segment) -> TranscriptLine:
        return cls(start=segment.start, end=segment.end, text=segment.text)


class DetectedObject(_Model):
    """One object detection in a kept frame at ``t`` (seconds)."""

    t: float
    label: str
    confidence: float = 0.0
    box: _Box = None

    @classmethod
    def of(cls, detection: _media.Detection) -> DetectedObject:
        return cls(t=detection.t, label=detection.label, confidence=detection.confidence, box=detection.box)


class OcrRead(_Model):
    """One OCR read in a kept frame at ``t`` (seconds)."""

    t: float
    text: str
    confidence: float = 0.0
    box: _Box = None

    @classmethod
    def of(cls, read: _media.OcrText) -> OcrRead:
        return cls(t=read.t, text=read.text, confidence=read.confidence, box=read.box)


class OnScreenText(_Model):
    """One on-screen text over one interval (an entry of part 1's ``texts``): read on ``frames`` kept
    frames from ``first_t`` to ``last_t``; ``text``/``confidence``/``box`` (and ``engine``,
    ``hangul_ratio``) are the most confident read's."""

    text: str
    first_t: float
    last_t: float
    confidence: float = 0.0
    box: Annotated[_Xyxy | None, BeforeValidator(_no_box)] = None
    engine: str = ""
    hangul_ratio: float = 0.0
    frames: int = 1

    @classmethod
    def of(cls, span: _media.TextSpan) -> OnScreenText:
        return cls(
            text=span.text,
            first_t=span.first_t,
            last_t=span.last_t,
            confidence=span.confidence,
            box=span.box,
            engine=span.engine,
            hangul_ratio=span.hangul_ratio,
            frames=span.frames,
        )

    def overlaps(self, lo: float, hi: float) -> bool:
        """On screen at some time in ``[lo, hi]``."""
        return self.first_t <= hi and self.last_t >= lo

    def clipped(self, lo: float, hi: float) -> OnScreenText:
        """The part of the interval inside ``[lo, hi]`` (for an item that overlaps it)."""
        return self.model_copy(update={"first_t": max(self.first_t, lo), "last_t": min(self.last_t, hi)})

    def nearest(self, t: float) -> float:
        """The time of the interval nearest to ``t``."""
        return min(max(t, self.first_t), self.last_t)


# The names these models had as the analysis inputs only (stageflow.api keeps them).
SegmentIn = TranscriptLine
DetectionIn = DetectedObject
OcrIn = OcrRead
TextIn = OnScreenText


def fold_reads(reads: Sequence[OcrRead]) -> tuple[OnScreenText, ...]:
    """Per-frame reads as ``texts`` items, by part 1's rule (:func:`stageflow.contracts.media.spans`:
    same text up to one letter, same box, at most 5 s between sightings). Reads without a box join by
    text alone."""
    whole = (0.0, 0.0, 1.0, 1.0)
    folded = _media.spans(
        [_media.OcrText(t=o.t, text=o.text, confidence=o.confidence, box=o.box or whole) for o in reads]
    )
    return tuple(
        OnScreenText.of(x) if x.box != whole else OnScreenText.of(x).model_copy(update={"box": None})
        for x in folded
    )


class FrameIn(_Model):
    """A kept frame on the video's timeline: its image file (JPEG from part 1's decode stage)."""

    t: float
    path: str


class InfluencerStats(_Model):
    """What is known about the channel; every field optional (unknown scores 0)."""

    subscribers: int | None = None
    engagement_rate: float | None = None  # (likes + comments) / views, a fraction
    consistency: float | None = None  # 0..1, regularity of uploads
    authenticity: float | None = None  # 0..1


class VideoEvidence(_Model):
    """Everything part 1 produced for one video."""

    video_id: str
    title: str = ""
    source: str = ""
    duration_s: float | None = None
    transcript: tuple[TranscriptLine, ...] = ()
    detections: tuple[DetectedObject, ...] = ()
    texts: tuple[OnScreenText, ...] = ()  # on-screen texts, one item per text per on-screen interval
    frames: tuple[FrameIn, ...] = ()  # kept frames (visual evidence for a model analyzer); optional
    channel: InfluencerStats = Field(default_factory=InfluencerStats)

    @classmethod
    def from_part1(cls, video: Mapping[str, Any], channel: Mapping[str, Any] | None = None) -> VideoEvidence:
        """Build from one entry of part 1's ``{"videos": [...]}`` document: its ``texts``, else (none
        given, or a record stored before part 1 had them) its per-frame ``ocr`` folded into items.
        The entry's items may be the record's models themselves (``dict(record)``: taken as they are)."""
        if video.get("texts"):
            texts = tuple(OnScreenText.model_validate(x) for x in video["texts"])
        else:
            texts = fold_reads([OcrRead.model_validate(o) for o in video.get("ocr") or ()])
        return cls(
            video_id=str(video["id"]),
            title=video.get("title") or "",
            source=video.get("source") or "",
            duration_s=video.get("duration_s"),
            transcript=tuple(TranscriptLine.model_validate(s) for s in video.get("transcript") or ()),
            detections=tuple(DetectedObject.model_validate(d) for d in video.get("detections") or ()),
            texts=texts,
            frames=tuple(FrameIn.model_validate(f) for f in video.get("frames") or () if "path" in f),
            channel=InfluencerStats.model_validate(dict(channel or {})),
        )


class TimeRange(_Model):
    """A stretch of the video worth a candidate (pass a). ``origin``: "speech" or "ocr" (on-screen
    text with no speech about it)."""

    start: float
    end: float
    reason: str = ""
    origin: str = "speech"

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: float, info: ValidationInfo) -> float:
        start = info.data.get("start", 0.0)
        if end < start:
            raise ValueError(f"range end {end} is before its start {start}")
        return end


class RangeEvidence(_Model):
    quotes: tuple[str, ...] = ()
    ocr_texts: tuple[str, ...] = ()
    detections: tuple[str, ...] = ()
    frame_times: tuple[float, ...] = ()
    ppl: tuple[str, ...] = ()  # the PPL patterns found for this candidate ("caption:광고", "협찬", ...)


class Candidate(_Model):
    """A product candidate (pass b), enriched by scoring, commerce and routing."""

    video_id: str = ""
    product_name: str = NEEDS_CHECK
    brand: str | None = None
    category_path: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    start: float
    end: float
    evidence: RangeEvidence = Field(default_factory=RangeEvidence)
    hook_sentence: str | None = None
    summary: str | None = None
    hashtags: tuple[str, ...] = ()
    confidence: float = 0.0
    score: int | None = None
    score_band: str | None = None
    ppl_probability: float | None = None
    status: str = "pending"
    commerce: CommerceMatch | None = None
    clip: str | None = None
    thumbnail: str | None = None

    @field_validator("category_path")
    @classmethod
    def _levels(cls, path: tuple[str, ...]) -> tuple[str, ...]:
        if len(path) > 3:
            raise ValueError("category_path has at most 3 levels")
        return path

    @property
    def id(self) -> str:
        return candidate_id(self.video_id, self.start, self.end)

    def to_output(self) -> dict[str, Any]:
        """The issue-6 ``candidates`` entry of ``stageflow analyze --json``."""
        data = self.model_dump(mode="json")
        data["id"] = self.id
        return data


def candidate_id(video_id: str, start: float, end: float) -> str:
    """Stable id keyed by video id + range (milliseconds): re-running a video upserts, never duplicates."""
    raw = f"{video_id}|{round(start * 1000)}|{round(end * 1000)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@runtime_checkable
class Analyzer(Protocol):
    """Pass a: ``find_ranges`` returns the stretches of the transcript worth a candidate (ordered by
    start). Pass b: ``candidate`` reads one range's evidence (speech, on-screen text, objects, frames)
    and returns its candidate (``product_name`` is :data:`NEEDS_CHECK` when unclear, never invented)."""

    def find_ranges(self, transcript: Sequence[TranscriptLine]) -> list[TimeRange]: ...
    def candidate(self, time_range: TimeRange, evidence: VideoEvidence) -> Candidate: ...
