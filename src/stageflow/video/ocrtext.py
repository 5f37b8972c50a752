"""On-screen text post-processing shared by every OCR engine: Hangul ratio, the noise filter and the
merge of several engines' results. Pure functions on :class:`OcrText`; never runs an OCR engine."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stageflow.stages import OcrText


def hangul_ratio(text: str) -> float:
    """Share of Hangul syllables/jamo among the letters of ``text`` (0.0 when it has no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    hangul = sum(1 for c in letters if "HANGUL" in unicodedata.name(c, ""))
    return round(hangul / len(letters), 3)


def make_text(
    t: float, text: str, confidence: float, box: tuple[float, float, float, float], engine: str
) -> OcrText:
    clean = " ".join(text.split())
    return OcrText(
        t=t,
        text=clean,
        confidence=round(confidence, 4),
        box=tuple(round(v, 1) for v in box),  # type: ignore[arg-type]
        engine=engine,
        hangul_ratio=hangul_ratio(clean),
    )


def script_share(text: str) -> float:
    """Share of Hangul, Latin letters and digits among the non-space characters of ``text``: what a
    caption in Korean or English is made of (misread texture comes out as punctuation, stray CJK or
    symbols)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    good = sum(
        1 for c in chars if c.isdigit() or ("a" <= c.lower() <= "z") or "HANGUL" in unicodedata.name(c, "")
    )
    return good / len(chars)


@dataclass(frozen=True)
class NoiseFilter:
    """Drops low-confidence reads, very short strings, strings with no letter or digit, and strings
    where Hangul/Latin letters and digits are under ``min_script_share`` of the characters."""

    min_confidence: float = 0.5
    min_chars: int = 2
    min_script_share: float = 0.6

    def keep(self, item: OcrText) -> bool:
        text = item.text.strip()
        if item.confidence < self.min_confidence or len(text.replace(" ", "")) < self.min_chars:
            return False
        return any(c.isalnum() for c in text) and script_share(text) >= self.min_script_share


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / smaller if smaller > 0 else 0.0


def merge(results: Iterable[Sequence[OcrText]]) -> list[OcrText]:
    """Union of several engines' reads: at one frame time, two reads whose boxes overlap by more than
    half are one text; the more confident read wins. Sorted by time then top-to-bottom."""
    kept: list[OcrText] = []
    for engine_result in results:
        for item in engine_result:
            clash = next(
                (i for i, k in enumerate(kept) if k.t == item.t and _overlap(k.box, item.box) > 0.5), None
            )
            if clash is None:
                kept.append(item)
            elif item.confidence > kept[clash].confidence:
                kept[clash] = item
    return sorted(kept, key=lambda o: (o.t, o.box[1], o.box[0]))
