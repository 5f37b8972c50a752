"""Contracts of the media family: finding videos, fetching them, and reading what is in them.

Protocols: :class:`Source`, :class:`Downloader`, :class:`Transcriber`, :class:`Detector`,
:class:`OcrEngine`; data: :class:`MediaItem`, :class:`Frame`, :class:`Transcript`, :class:`Segment`,
:class:`Word`, :class:`Detection`, :class:`OcrText`.

Lifecycle (every family): a backend MAY also define ``preflight(self) -> None`` (raise a
:class:`stageflow.errors.StageflowError` to refuse before any work is done) and ``close(self) -> None``
(release clients, sockets, models). Neither is a required member of the Protocols, so backends written
before them still satisfy their kind; callers use :func:`stageflow.contracts.preflight` /
:func:`stageflow.contracts.close`, which call them only when present.

This module is the bottom floor: it imports only the standard library (never numpy, never an engine).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Detection",
    "Detector",
    "Downloader",
    "Frame",
    "MediaItem",
    "OcrEngine",
    "OcrText",
    "Segment",
    "Source",
    "TextSpan",
    "Transcriber",
    "Transcript",
    "Word",
    "spans",
]


@dataclass(frozen=True)
class MediaItem:
    """A video found by a source. ``item_id`` is unique within ``source``; ``extra`` holds what a
    source knows beyond these fields (JSON-like values)."""

    source: str
    item_id: str
    title: str
    url: str
    published: datetime | None = None
    channel: str | None = None
    thumbnail: str | None = None
    is_short: bool = False
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Word:
    """A transcribed word; times in seconds on the video's timeline."""

    start: float
    end: float
    text: str
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
    """A transcribed stretch of speech; times in seconds on the video's timeline."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    language: str | None
    duration_s: float
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class Frame:
    """A kept video frame: ``image`` is an RGB uint8 numpy array (H, W, 3) (typed ``Any``: contracts
    never import numpy); ``t`` its time in seconds."""

    t: float
    index: int
    image: Any = field(repr=False)
    sharpness: float = 0.0


@dataclass(frozen=True)
class Detection:
    """An object in a frame; ``box`` is (x1, y1, x2, y2) in pixels of that frame."""

    t: float
    label: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class OcrText:
    """Text read in a frame; ``box`` is (x1, y1, x2, y2) in pixels; ``engine`` names the backend."""

    t: float
    text: str
    confidence: float
    box: tuple[float, float, float, float]
    engine: str = ""
    hangul_ratio: float = 0.0


@runtime_checkable
class Source(Protocol):
    """Finds videos (a feed, a folder, a list of URLs)."""

    def discover(self) -> list[MediaItem]: ...


@runtime_checkable
class Downloader(Protocol):
    """Fetches a media URL into the directory ``dest``; returns the downloaded file's path."""

    def can_handle(self, url: str) -> bool: ...
    def download(self, url: str, dest: Path) -> Path: ...


@runtime_checkable
class Transcriber(Protocol):
    """``audio``: 16 kHz mono float32 samples (a numpy array) starting at t=0 of the video. Typed
    ``Any`` on purpose: contracts never import numpy."""

    def transcribe(self, audio: Any, language: str | None = None) -> Transcript: ...


@runtime_checkable
class Detector(Protocol):
    def detect(self, frames: Sequence[Frame]) -> list[Detection]: ...


@runtime_checkable
class OcrEngine(Protocol):
    def read(self, frames: Sequence[Frame]) -> list[OcrText]: ...


# --------------------------------------------------------------------------- on-screen texts
# The rule by which per-frame reads become part 1's ``texts`` (one item per text per on-screen
# interval): part 1 applies it to its reads, and the analysis applies it to documents that only
# carry per-frame ``ocr``, so both sides of the contract fold the same way.


@dataclass(frozen=True)
class TextSpan:
    """One on-screen text over one interval: seen on ``frames`` kept frames from ``first_t`` to
    ``last_t``; ``text``/``box``/``confidence`` are the most confident read's."""

    text: str
    first_t: float
    last_t: float
    confidence: float
    box: tuple[float, float, float, float]
    engine: str
    hangul_ratio: float
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box": list(self.box)}


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def _same_text(a: str, b: str, min_similarity: float) -> bool:
    x, y = "".join(a.lower().split()), "".join(b.lower().split())
    return x == y or difflib.SequenceMatcher(None, x, y).ratio() >= min_similarity


def spans(reads: Sequence[OcrText], max_gap_s: float = 5.0, min_similarity: float = 0.8) -> list[TextSpan]:
    """Fold per-frame reads into intervals: a read continues an open span when its box overlaps the
    span's last box by more than half, its text is the same up to ``min_similarity`` (OCR varies a
    letter between frames), and it comes at most ``max_gap_s`` after the span's last sighting."""
    open_: list[list[OcrText]] = []
    done: list[list[OcrText]] = []
    for item in sorted(reads, key=lambda o: o.t):
        still: list[list[OcrText]] = []
        for group in open_:
            (still if item.t - group[-1].t <= max_gap_s else done).append(group)
        open_ = still
        match = next(
            (
                g
                for g in open_
                if g[-1].t < item.t
                and _overlap(g[-1].box, item.box) > 0.5
                and _same_text(g[-1].text, item.text, min_similarity)
            ),
            None,
        )
        if match is None:
            open_.append([item])
        else:
            match.append(item)
    out = []
    for group in [*done, *open_]:
        best = max(group, key=lambda o: o.confidence)
        out.append(
            TextSpan(
                best.text,
                group[0].t,
                group[-1].t,
                best.confidence,
                best.box,
                best.engine,
                best.hangul_ratio,
                len(group),
            )
        )
    return sorted(out, key=lambda s: (s.first_t, s.box[1], s.box[0]))
