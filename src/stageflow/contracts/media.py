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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    "Transcriber",
    "Transcript",
    "Word",
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
