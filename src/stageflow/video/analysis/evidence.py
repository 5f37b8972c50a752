"""Analysis-side input and output models, built from the plain dicts part 1 emits (the issue-5
``--json`` shape): transcript segments, detections and OCR texts on the video's timeline, plus the
candidate model the analysis stages produce.

This module only defines data; it never calls a model, a service or the store, and never depends on
part 1's internal types (only on the documented dict shapes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

NEEDS_CHECK = "확인 필요"  # an unclear product name: shown to reviewers, never invented


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SegmentIn(_Model):
    """One transcript segment; times in seconds on the video's timeline."""

    start: float
    end: float
    text: str = ""


class DetectionIn(_Model):
    t: float
    label: str
    confidence: float = 0.0
    box: tuple[float, float, float, float] | None = None


class OcrIn(_Model):
    t: float
    text: str
    confidence: float = 0.0
    box: tuple[float, float, float, float] | None = None


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
    transcript: tuple[SegmentIn, ...] = ()
    detections: tuple[DetectionIn, ...] = ()
    ocr: tuple[OcrIn, ...] = ()
    frames: tuple[FrameIn, ...] = ()  # kept frames (visual evidence for a model analyzer); optional
    channel: InfluencerStats = Field(default_factory=InfluencerStats)

    @classmethod
    def from_part1(cls, video: Mapping[str, Any], channel: Mapping[str, Any] | None = None) -> VideoEvidence:
        """Build from one entry of part 1's ``{"videos": [...]}`` document."""
        return cls(
            video_id=str(video["id"]),
            title=video.get("title") or "",
            source=video.get("source") or "",
            duration_s=video.get("duration_s"),
            transcript=tuple(SegmentIn.model_validate(s) for s in video.get("transcript") or ()),
            detections=tuple(DetectionIn.model_validate(d) for d in video.get("detections") or ()),
            ocr=tuple(OcrIn.model_validate(o) for o in video.get("ocr") or ()),
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
    def _ordered(cls, end: float, info: Any) -> float:
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


class CommerceMatch(_Model):
    product_id: str
    title: str
    price: float | None = None
    url: str
    similarity: float


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


def segments_in(segments: Sequence[SegmentIn], start: float, end: float) -> list[SegmentIn]:
    """Segments overlapping [start, end] (touching is not overlapping; a point range takes the
    segments that contain it)."""
    if end <= start:
        return [s for s in segments if s.start <= start <= s.end]
    return [s for s in segments if s.start < end and s.end > start]
