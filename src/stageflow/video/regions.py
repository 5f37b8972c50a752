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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from stageflow.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_import("numpy")  # only the functions need it: a base install imports this module

from stageflow.contracts.media import TextSpan as TextSpan
from stageflow.contracts.media import spans as spans
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


def thumb(image: np.ndarray, width: int = 160) -> np.ndarray:
    """``image`` as a small grayscale array (``width`` wide, aspect kept; int16 for diffs)."""
    from PIL import Image

    h, w = image.shape[:2]
    size = (width, max(1, round(h * width / max(w, 1))))
    return np.asarray(Image.fromarray(image).convert("L").resize(size, Image.Resampling.BOX), np.int16)


def signature(region: np.ndarray) -> np.ndarray:
    """A crop as a fixed 24x96 grayscale array: two crops of the same box compare cell by cell."""
    from PIL import Image

    if region.size == 0:
        return np.zeros((24, 96), np.int16)
    small = Image.fromarray(region).convert("L").resize((96, 24), Image.Resampling.BOX)
    return np.asarray(small, np.int16)


def same_pixels(a: np.ndarray, b: np.ndarray, max_cell_diff: int, max_changed: float) -> bool:
    """``a`` and ``b`` (small grayscale arrays) show the same picture: at most ``max_changed`` of
    their cells differ by more than ``max_cell_diff`` levels (codec noise stays well under it; a
    caption that appears, disappears or changes a letter moves many cells by far more)."""
    if a.shape != b.shape:
        return False
    return float(np.mean(np.abs(a - b) > max_cell_diff)) <= max_changed


@dataclass
class _Seen:
    thumb: np.ndarray
    boxes: list[Box]
    sigs: list[np.ndarray]
    best: list[OcrText | None]  # the winning read per box (None: nothing passed the filters)


@dataclass
class RegionCache:
    """What :func:`read_regions` saw per frame index, so a later frame that repeats a reference
    frame reuses its work: the frame's small grayscale thumbnail nearly equal to the reference's
    reuses its text boxes (no detection); a box whose crop nearly equals the reference's crop of the
    same box reuses its read (no recognition), with the new frame's time. A static caption is thus
    detected and recognised once per on-screen interval, yet still reported on every sampled frame.

    ``detected`` / ``recognised`` / ``reused_boxes`` / ``reused_reads`` count the work done and saved.
    """

    frame_cell_diff: int = 24  # thumbnail: 160 px wide, one cell ~ 8x8 pixels of a 720p frame
    frame_changed: float = 0.001  # ~14 cells of 14,400: a new short caption moves far more
    crop_cell_diff: int = 32  # crop signature 24x96: one letter spans several cells
    crop_changed: float = 0.01
    seen: dict[int, _Seen] = field(default_factory=dict)
    detected: int = 0
    recognised: int = 0
    reused_boxes: int = 0
    reused_reads: int = 0

    def stats(self) -> dict[str, int]:
        return {
            "frames_detected": self.detected,
            "frames_reusing_boxes": self.reused_boxes,
            "crops_recognised": self.recognised,
            "crops_reusing_reads": self.reused_reads,
        }


def _round(box: Box) -> Box:
    return (round(box[0], 1), round(box[1], 1), round(box[2], 1), round(box[3], 1))


def _reusable(ref: _Seen, box: Box, sig: np.ndarray, cache: RegionCache) -> int | None:
    """Index of ``ref``'s box that ``box`` repeats (same place, same pixels), if any."""
    for j, other in enumerate(ref.boxes):
        if _iou(other, box) >= 0.8 and same_pixels(
            ref.sigs[j], sig, cache.crop_cell_diff, cache.crop_changed
        ):
            return j
    return None


def read_regions(
    frames: Sequence[Frame],
    detector: TextDetector,
    engines: Sequence[CropRecogniser],
    *,
    refs: Mapping[int, int] | None = None,
    cache: RegionCache | None = None,
) -> list[OcrText]:
    """Per frame: the detector's boxes, each read by every engine; the most confident read that its
    engine's filter keeps wins the box (so rapidocr's Latin-only recogniser loses Korean captions to
    tesseract's garbage-free read, and tesseract loses Latin captions it misreads).

    ``refs`` (frame index -> an earlier frame index in ``cache``) names the frame each one may repeat
    (a steady frame: its scene frame; a scene frame: the scene before it); with ``cache`` a frame that
    repeats its reference reuses its boxes and, per unchanged crop, its reads (:class:`RegionCache`).
    Every engine reads all the new crops of ``frames`` in one call (tesseract: one process)."""
    cache = cache if cache is not None else RegionCache()
    refs = refs or {}
    pending: list[np.ndarray] = []  # crops to recognise
    # per box: the pending crop's slot, or the reference frame's box whose read it reuses (resolved
    # after recognition, in frame order: a reference read in this same call is known by then)
    plan: list[tuple[Frame, _Seen, list[int | tuple[_Seen, int]]]] = []
    for frame in frames:
        small = thumb(frame.image)
        ref = cache.seen.get(refs.get(frame.index, -1))
        if ref is not None and same_pixels(ref.thumb, small, cache.frame_cell_diff, cache.frame_changed):
            boxes = list(ref.boxes)
            cache.reused_boxes += 1
        else:
            found = detector.detect_boxes(frame.image)
            boxes = [b for b in found if b[2] - b[0] >= 4 and b[3] - b[1] >= 4]
            cache.detected += 1
        crops = [crop(frame.image, b) for b in boxes]
        seen = _Seen(small, boxes, [signature(c) for c in crops], [None] * len(boxes))
        slots: list[int | tuple[_Seen, int]] = []
        for i, box in enumerate(boxes):
            j = None if ref is None else _reusable(ref, box, seen.sigs[i], cache)
            if ref is not None and j is not None:
                slots.append((ref, j))
                cache.reused_reads += 1
            else:
                slots.append(len(pending))
                pending.append(crops[i])
        cache.seen[frame.index] = seen
        plan.append((frame, seen, slots))
    cache.recognised += len(pending)
    reads = [(engine, engine.recognise(pending)) for engine in engines] if pending else []
    out: list[OcrText] = []
    for frame, seen, slots in plan:
        for i, (box, slot) in enumerate(zip(seen.boxes, slots, strict=True)):
            if isinstance(slot, tuple):
                read = slot[0].best[slot[1]]
                seen.best[i] = None if read is None else replace(read, t=frame.t, box=_round(box))
            else:
                best: OcrText | None = None
                for engine, texts in reads:
                    text, conf = texts[slot]
                    item = make_text(frame.t, text, conf, box, engine.name)
                    if engine.filter.keep(item) and (best is None or item.confidence > best.confidence):
                        best = item
                seen.best[i] = best
            if seen.best[i] is not None:
                out.append(seen.best[i])  # type: ignore[arg-type]
    return sorted(out, key=lambda o: (o.t, o.box[1], o.box[0]))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0
