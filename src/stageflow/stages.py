"""The typed contracts between flows and backends: one Protocol per stage kind, and the small data
types that cross a stage boundary.

Backends implement these Protocols; flows and engines depend on them, never on a plugin module.
This module imports nothing heavy (no Prefect, no ML libraries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# --------------------------------------------------------------------------- data crossing stages


@dataclass(frozen=True)
class MediaItem:
    """A video found by a source. ``item_id`` is unique within ``source``."""

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
class Message:
    """A notification. ``fields`` become a table or key/value list where the notifier supports it."""

    title: str
    text: str = ""
    level: str = "info"  # info | warning | error
    link: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one monitor probe."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class TransferStats:
    files: int = 0
    bytes: int = 0
    deleted: int = 0


# --------------------------------------------------------------------------- video analysis data


@dataclass(frozen=True)
class Word:
    """A transcribed word; times in seconds on the video's timeline."""

    start: float
    end: float
    text: str
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
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
    """A kept video frame: ``image`` is an RGB uint8 array (H, W, 3); ``t`` its time in seconds."""

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


# --------------------------------------------------------------------------- Protocols, one per kind


@runtime_checkable
class Source(Protocol):
    def discover(self) -> list[MediaItem]: ...


@runtime_checkable
class Downloader(Protocol):
    """Fetches a media URL into the directory ``dest``; returns the downloaded file's path."""

    def can_handle(self, url: str) -> bool: ...
    def download(self, url: str, dest: Path) -> Path: ...


@runtime_checkable
class Transcriber(Protocol):
    """``audio``: 16 kHz mono float32 samples (numpy array) starting at t=0 of the video."""

    def transcribe(self, audio: Any, language: str | None = None) -> Transcript: ...


@runtime_checkable
class Detector(Protocol):
    def detect(self, frames: Sequence[Frame]) -> list[Detection]: ...


@runtime_checkable
class OcrEngine(Protocol):
    def read(self, frames: Sequence[Frame]) -> list[OcrText]: ...


@runtime_checkable
class Analyzer(Protocol):
    def find_ranges(self, transcript: Any) -> list[Any]: ...
    def candidate(self, time_range: Any, evidence: Any) -> Any: ...


@runtime_checkable
class CommerceApi(Protocol):
    def search(self, keyword: str, limit: int = 10) -> list[Any]: ...
    def deeplink(self, urls: Sequence[str]) -> list[str]: ...


@runtime_checkable
class Sink(Protocol):
    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int: ...


@runtime_checkable
class Notifier(Protocol):
    def notify(self, message: Message) -> None: ...


@runtime_checkable
class Transport(Protocol):
    def send(self, source: Path, dest: str, changes: Any) -> TransferStats: ...


@runtime_checkable
class BuildRunner(Protocol):
    def run(self, task: Any) -> Any: ...


@runtime_checkable
class BuildCache(Protocol):
    def fetch(self, key: str, dest: Path) -> Any: ...
    def store(self, key: str, root: Path, outputs: Sequence[str], log: str) -> None: ...


@runtime_checkable
class DeployHook(Protocol):
    """``run(context)`` after a deploy. Optional, not part of the runtime check:
    ``preflight(context: PreflightContext)``, called by the safety net before anything is written."""

    def run(self, context: Any) -> Any: ...


@runtime_checkable
class Check(Protocol):
    def probe(self) -> CheckResult: ...


#: Stage kind -> the Protocol its backends satisfy. Each kind has a hook ``register_<kind>``.
KINDS: dict[str, type] = {
    "sources": Source,
    "downloaders": Downloader,
    "transcribers": Transcriber,
    "detectors": Detector,
    "ocr_engines": OcrEngine,
    "analyzers": Analyzer,
    "commerce": CommerceApi,
    "sinks": Sink,
    "notifiers": Notifier,
    "transports": Transport,
    "build_runners": BuildRunner,
    "build_caches": BuildCache,
    "deploy_hooks": DeployHook,
    "checks": Check,
}
