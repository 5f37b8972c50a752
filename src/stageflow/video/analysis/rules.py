"""The ``rules`` analyzer: offline, no model. Pass a finds time ranges where the speaker shows,
describes, uses, owns or recommends an item (a cue from the Korean + English lexicon; a bare brand
mention is not enough). Pass b builds a candidate from the range's speech, the on-screen text matched
to it (exact 1.0, substring 0.9, token Jaccard; >= 0.6 is product-related) and YOLO labels as
category hints. On-screen text naming a known brand with no speech about it gives an "ocr" range with
lower confidence.

It never invents a value: an unknown field is None, an unclear name is "확인 필요".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from stageflow.video.analysis.evidence import (
    NEEDS_CHECK,
    Candidate,
    OcrIn,
    RangeEvidence,
    SegmentIn,
    TimeRange,
    VideoEvidence,
    segments_in,
)
from stageflow.video.analysis.lexicon import BRANDS, LABEL_CATEGORIES, RANGE_CUES, cue_hits
from stageflow.video.analysis.similarity import RELATED_THRESHOLD, normalize, text_match, tokens


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merge_gap_s: float = 3.0  # cue segments closer than this form one range
    context_segments: int = 1  # neighbouring segments added before a range (the item is often named there)
    ocr_window_s: float = 2.0  # on-screen text this close to a range belongs to it
    ocr_min_confidence: float = 0.5
    ocr_merge_gap_s: float = 10.0  # on-screen-only text frames closer than this form one range
    detection_min_confidence: float = 0.4
    brands: dict[str, list[str]] = {}  # extra brands: canonical -> spellings


def _segments(transcript: Any) -> list[SegmentIn]:
    if isinstance(transcript, VideoEvidence):
        return list(transcript.transcript)
    out = []
    for s in transcript or ():
        out.append(s if isinstance(s, SegmentIn) else SegmentIn.model_validate(s))
    return sorted(out, key=lambda s: (s.start, s.end))


class RulesAnalyzer:
    name = "rules"

    def __init__(self, config: RulesConfig | None = None):
        self.config = config or RulesConfig()
        self.brands: dict[str, tuple[str, ...]] = dict(BRANDS)
        for canonical, spellings in self.config.brands.items():
            self.brands[canonical] = tuple({canonical.lower(), *(s.lower() for s in spellings)})

    # ------------------------------------------------------------------ pass a
    def find_ranges(self, transcript: Any) -> list[TimeRange]:
        segs = [s for s in _segments(transcript) if s.text.strip()]
        ranges: list[tuple[int, int, set[str]]] = []
        for i, seg in enumerate(segs):
            kinds = {k for k in RANGE_CUES if cue_hits(seg.text, k)}
            if not kinds:
                continue
            if ranges and seg.start - segs[ranges[-1][1]].end <= self.config.merge_gap_s:
                first, _, old = ranges[-1]
                ranges[-1] = (first, i, old | kinds)
            else:
                ranges.append((i, i, kinds))
        out = []
        for first, last, kinds in ranges:
            lo = first
            for _ in range(self.config.context_segments):
                if lo > 0 and segs[lo].start - segs[lo - 1].end <= self.config.merge_gap_s:
                    lo -= 1
            if out and segs[lo].start < out[-1].end:  # never overlap the previous range
                lo = first
            out.append(TimeRange(start=segs[lo].start, end=segs[last].end, reason=",".join(sorted(kinds))))
        return out

    def ocr_ranges(self, evidence: VideoEvidence, covered: Sequence[TimeRange]) -> list[TimeRange]:
        """On-screen text that names a known brand, away from every speech range: one range per
        cluster of such frames (gap <= ocr_merge_gap_s)."""
        times = sorted(
            o.t
            for o in evidence.ocr
            if o.confidence >= self.config.ocr_min_confidence
            and self._brand_in(o.text)
            and not any(
                r.start - self.config.ocr_window_s <= o.t <= r.end + self.config.ocr_window_s for r in covered
            )
        )
        out: list[TimeRange] = []
        for t in times:
            if out and t - out[-1].end <= self.config.ocr_merge_gap_s:
                out[-1] = TimeRange(start=out[-1].start, end=t, reason="on-screen brand", origin="ocr")
            else:
                out.append(TimeRange(start=t, end=t, reason="on-screen brand", origin="ocr"))
        return out

    # ------------------------------------------------------------------ pass b
    def candidate(self, time_range: Any, evidence: Any) -> Candidate:
        rng = time_range if isinstance(time_range, TimeRange) else TimeRange.model_validate(time_range)
        ev = evidence if isinstance(evidence, VideoEvidence) else VideoEvidence.model_validate(evidence)
        cfg = self.config
        segs = segments_in(ev.transcript, rng.start, rng.end)
        quotes = [s.text.strip() for s in segs if s.text.strip()]
        spoken = " ".join(quotes)
        lo, hi = rng.start - cfg.ocr_window_s, rng.end + cfg.ocr_window_s
        ocr = [
            o for o in ev.ocr if lo <= o.t <= hi and o.confidence >= cfg.ocr_min_confidence and o.text.strip()
        ]
        dets = [
            d
            for d in ev.detections
            if rng.start <= d.t <= rng.end and d.confidence >= cfg.detection_min_confidence
        ]

        name, match = self._name_from_ocr(ocr, spoken, ocr_only=rng.origin == "ocr")
        brand = self._brand_in(" ".join([name or "", spoken, *(o.text for o in ocr)]))
        category = self._category(dets)
        kinds = {k for k in RANGE_CUES if cue_hits(spoken, k)}

        if rng.origin == "ocr":
            confidence = 0.2 + (0.1 if brand else 0.0) + (0.05 if category else 0.0)
        else:
            confidence = 0.3 + 0.1 * min(3, len(kinds)) + 0.25 * match + (0.05 if brand else 0.0)
            confidence += 0.05 if category else 0.0
        if name is None:
            name = NEEDS_CHECK
            confidence = min(confidence, 0.5)
        label = f"{brand} {name}" if brand and brand.lower() not in name.lower() else name
        hook = self._hook(quotes)
        tags = [f"#{t.replace(' ', '')}" for t in (brand, category[-1] if category else None) if t]
        if name != NEEDS_CHECK:
            tags.extend(f"#{t}" for t in tokens(name)[:2] if len(t) >= 2)
        return Candidate(
            video_id=ev.video_id,
            product_name=name,
            brand=brand,
            category_path=category,
            features=tuple(q[:80] for q in quotes if cue_hits(q, "effect"))[:3],
            start=rng.start,
            end=rng.end,
            evidence=RangeEvidence(
                quotes=tuple(quotes),
                ocr_texts=tuple(dict.fromkeys(o.text.strip() for o in ocr)),
                detections=tuple(dict.fromkeys(d.label for d in dets)),
                frame_times=tuple(sorted({round(x.t, 3) for x in [*ocr, *dets]})),
            ),
            hook_sentence=hook,
            summary=(f"{label}: {hook}" if hook else f"{label} (화면 텍스트)")[:160],
            hashtags=tuple(dict.fromkeys(tags))[:5],
            confidence=round(min(confidence, 0.95), 3),
        )

    # ------------------------------------------------------------------ helpers
    def _brand_in(self, text: str) -> str | None:
        low = " " + text.lower() + " "
        norm = " " + normalize(text) + " "
        for canonical, spellings in self.brands.items():
            if any(s in low or (normalize(s) and f" {normalize(s)}" in norm) for s in spellings):
                return canonical
        return None

    def _is_only_brand(self, text: str) -> bool:
        rest = normalize(text)
        for spellings in self.brands.values():
            for s in spellings:
                rest = rest.replace(normalize(s), " ") if normalize(s) else rest
        return not rest.strip()

    def _name_from_ocr(
        self, ocr: Sequence[OcrIn], spoken: str, *, ocr_only: bool
    ) -> tuple[str | None, float]:
        """The on-screen text best matched to the speech (>= 0.6), or for an OCR-only range the most
        frequent branded text; (None, 0) when nothing qualifies."""
        best: tuple[float, float, str] | None = None
        counts: dict[str, int] = {}
        for o in ocr:
            text = " ".join(o.text.split())
            if len(normalize(text)) < 2 or self._is_only_brand(text):
                continue
            counts[text] = counts.get(text, 0) + 1
            score = text_match(text, spoken) if spoken else 0.0
            if score >= RELATED_THRESHOLD and (best is None or (score, o.confidence) > best[:2]):
                best = (score, o.confidence, text)
        if best is not None:
            return best[2], best[0]
        if ocr_only:
            branded = [t for t in counts if self._brand_in(t)]
            if branded:
                return max(branded, key=lambda t: counts[t]), 0.0
        return None, 0.0

    @staticmethod
    def _category(dets: Sequence[Any]) -> tuple[str, ...]:
        votes: dict[str, float] = {}
        for d in dets:
            if d.label in LABEL_CATEGORIES:
                votes[d.label] = votes.get(d.label, 0.0) + d.confidence
        if not votes:
            return ()
        return LABEL_CATEGORIES[max(votes, key=lambda k: votes[k])]

    @staticmethod
    def _hook(quotes: Sequence[str]) -> str | None:
        if not quotes:
            return None

        def strength(q: str) -> int:
            return sum(cue_hits(q, k) for k in ("recommend", "positive", "emphasis")) + q.count("!")

        return max(quotes, key=strength)[:120]


def build_rules(config: RulesConfig | Mapping[str, Any] | None = None) -> RulesAnalyzer:
    cfg = config if isinstance(config, RulesConfig) else RulesConfig.model_validate(dict(config or {}))
    return RulesAnalyzer(cfg)
