"""OCR on text regions: one text detector finds the text boxes of a frame once, every configured
engine that can recognise crops reads each box, and per box the best read that passes the garbage
filter is kept. Afterwards :func:`spans` folds the reads of consecutive kept frames into one item per
text per on-screen interval, with its first and last time.

Reading crops instead of whole frames is what makes tesseract usable on captions: on a full 720p
frame ``--psm 6`` read a large Korean caption on 0 of 4 frames and turned background texture into
junk lines; the same caption's crop with ``--psm 7`` (one text line) reads exactly. Never loads a
model itself: the detector and engines arrive built.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stageflow.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_import("numpy")  # only the functions need it: a base install imports this module

from stageflow.stages import Frame, OcrText
from stageflow.video.ocrtext import NoiseFilter, make_text

Box = tuple[float, float, float, float]


class TextDetector(Protocol):
    def detect_boxes(self, image: np.ndarray) -> list[Box]:
        """Text line boxes ``(x1, y1, x2, y2)`` in pixels of ``image`` (RGB)."""
        ...


class CropRecogniser(Protocol):
    name: str
    filter: NoiseFilter

    def recognise(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """One ``(text, confidence 0..1)`` per crop (``("", 0.0)`` when nothing was read)."""
        ...


def crop(image: np.ndarray, box: Box, pad: int = 4) -> np.ndarray:
    """``box`` of ``image`` with ``pad`` pixels around it, clamped to the image."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0]) - pad), max(0, int(box[1]) - pad)
    x2, y2 = min(w, int(np.ceil(box[2])) + pad), min(h, int(np.ceil(box[3])) + pad)
    return image[y1:y2, x1:x2]


def read_regions(
    frames: Sequence[Frame],
    detector: TextDetector,
    engines: Sequence[CropRecogniser],
    *,
    known_boxes: Mapping[int, list[Box]] | None = None,
    found_boxes: dict[int, list[Box]] | None = None,
) -> list[OcrText]:
    """Per frame: the detector's boxes, each read by every engine; the most confident read that its
    engine's filter keeps wins the box (so rapidocr's Latin-only recogniser loses Korean captions to
    tesseract's garbage-free read, and tesseract loses Latin captions it misreads).

    ``known_boxes`` (frame index -> boxes) skips detection for those frames (a steady frame reuses
    its scene frame's boxes); ``found_boxes`` collects the boxes detected per frame index."""
    out: list[OcrText] = []
    for frame in frames:
        if known_boxes is not None and frame.index in known_boxes:
            boxes = known_boxes[frame.index]
        else:
            found = detector.detect_boxes(frame.image)
            boxes = [b for b in found if b[2] - b[0] >= 4 and b[3] - b[1] >= 4]
            if found_boxes is not None:
                found_boxes[frame.index] = boxes
        if not boxes:
            continue
        crops = [crop(frame.image, b) for b in boxes]
        reads = [(engine, engine.recognise(crops)) for engine in engines]
        for i, box in enumerate(boxes):
            best: OcrText | None = None
            for engine, texts in reads:
                text, conf = texts[i]
                item = make_text(frame.t, text, conf, box, engine.name)
                if engine.filter.keep(item) and (best is None or item.confidence > best.confidence):
                    best = item
            if best is not None:
                out.append(best)
    return sorted(out, key=lambda o: (o.t, o.box[1], o.box[0]))


@dataclass(frozen=True)
class TextSpan:
    """One on-screen text over one interval: seen on ``frames`` kept frames from ``first_t`` to
    ``last_t``; ``text``/``box``/``confidence`` are the most confident read's."""

    text: str
    first_t: float
    last_t: float
    confidence: float
    box: Box
    engine: str
    hangul_ratio: float
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box": list(self.box)}


def _overlap(a: Box, b: Box) -> float:
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
        still = []
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
