"""The ``rules`` analyzer: offline, no model. Pass a finds time ranges where the speaker shows,
describes, uses, owns or recommends an item (a cue from the Korean + English lexicon; a bare brand
mention or a call to action is not enough), one range per product: a segment naming a different
product starts a new range. Pass b names the product open-vocabulary (:mod:`naming`): noun phrases
of the speech and product captions on screen, fused when they agree (one OCR syllable error
tolerated), the brand by proximity (in the name, right before it, else nearest in time; the brand
list is a boost, not a gate); YOLO labels give category hints. Persistent product captions away
from any speech range give an "ocr" range with lower confidence (distinct captions stay distinct).

It never invents a value: an unknown field is None, an unclear name is "확인 필요".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from stageflow.video.analysis.evidence import (
    NEEDS_CHECK,
    Candidate,
    RangeEvidence,
    SegmentIn,
    TimeRange,
    VideoEvidence,
    on_screen_times,
    segments_in,
)
from stageflow.video.analysis.lexicon import (
    BRANDS,
    EXTEND_CUES,
    LABEL_CATEGORIES,
    RANGE_CUES,
    cue_hits,
    strip_calls_to_action,
)
from stageflow.video.analysis.naming import (
    Brands,
    Mention,
    brand_for,
    caption_mentions,
    choose_name,
    names_agree,
    product_type,
    speech_mentions,
)
from stageflow.video.analysis.similarity import tokens


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merge_gap_s: float = 3.0  # cue segments closer than this form one range
    context_segments: int = 1  # neighbouring segments added before a range (the item is often named there)
    ocr_window_s: float = 2.0  # on-screen text this close to a range belongs to it
    ocr_min_confidence: float = 0.5
    ocr_merge_gap_s: float = 10.0  # frames of the same on-screen caption closer than this: one range
    caption_min_frames: int = 2  # an unknown caption must persist this many frames to name a product
    detection_min_confidence: float = 0.4
    brands: dict[str, list[str]] = {}  # extra brands: canonical -> spellings


def _segments(transcript: Any) -> list[SegmentIn]:
    if isinstance(transcript, VideoEvidence):
        return list(transcript.transcript)
    out = []
    for s in transcript or ():
        out.append(s if isinstance(s, SegmentIn) else SegmentIn.model_validate(s))
    return sorted(out, key=lambda s: (s.start, s.end))


def _kinds(text: str) -> set[str]:
    clean = strip_calls_to_action(text)
    return {k for k in RANGE_CUES if cue_hits(clean, k, negation=k != "recommend")} | (
        {"recommend"} if cue_hits(clean, "recommend") else set()
    )


def _describes(text: str) -> bool:
    """The speaker goes on about the item (effect, praise, complaint, emotion): extends a range."""
    clean = strip_calls_to_action(text)
    return any(cue_hits(clean, k, negation=True) for k in EXTEND_CUES)


class RulesAnalyzer:
    name = "rules"

    def __init__(self, config: RulesConfig | None = None):
        self.config = config or RulesConfig()
        spellings: dict[str, tuple[str, ...]] = dict(BRANDS)
        for canonical, extra in self.config.brands.items():
            spellings[canonical] = tuple({canonical.lower(), *(s.lower() for s in extra)})
        self.brands = Brands(spellings)

    # ------------------------------------------------------------------ pass a
    def find_ranges(self, transcript: Any) -> list[TimeRange]:
        """One range per product mention: cue segments within ``merge_gap_s`` join the current
        mention unless they name a different product (then a new range starts); a named segment just
        before a cue segment belongs to its range."""
        segs = [s for s in _segments(transcript) if s.text.strip()]
        gap = self.config.merge_gap_s
        groups: list[dict[str, Any]] = []  # {"first", "last", "kinds", "name"}
        for i, seg in enumerate(segs):
            kinds = _kinds(seg.text)
            names = speech_mentions([seg], self.brands)
            name = max(names, key=lambda m: m.strength).text if names else None
            cur = groups[-1] if groups else None
            near = cur is not None and seg.start - segs[cur["last"]].end <= gap
            describes = _describes(seg.text)
            same = cur is not None and (name is None or cur["name"] is None or names_agree(name, cur["name"]))
            if near and same and cur is not None and (kinds or name is not None or describes):
                cur["last"], cur["kinds"] = i, cur["kinds"] | kinds
                cur["name"] = cur["name"] or name
                continue
            if kinds or name is not None:
                groups.append({"first": i, "last": i, "kinds": set(kinds), "name": name})
        out = []
        for g in groups:
            if not g["kinds"]:
                continue
            last = g["last"]
            while last > g["first"] and not (
                _kinds(segs[last].text)
                or _describes(segs[last].text)
                or speech_mentions([segs[last]], self.brands)
            ):
                last -= 1  # trailing segments that add nothing
            out.append(
                TimeRange(
                    start=segs[g["first"]].start, end=segs[last].end, reason=",".join(sorted(g["kinds"]))
                )
            )
        return out

    def ocr_ranges(self, evidence: VideoEvidence, covered: Sequence[TimeRange]) -> list[TimeRange]:
        """Product captions away from every speech range: one range per distinct caption (on-screen
        intervals of the same caption, within one OCR syllable, closer than ``ocr_merge_gap_s`` join;
        different captions never merge). A caption on screen during a speech range (or within
        ``ocr_window_s`` of it) belongs to that range's candidate, not to a range of its own."""
        w = self.config.ocr_window_s
        free = [
            x
            for x in evidence.texts
            if x.confidence >= self.config.ocr_min_confidence
            and x.text.strip()
            and not any(x.overlaps(r.start - w, r.end + w) for r in covered)
        ]
        out: list[tuple[float, float, str]] = []
        for m in caption_mentions(
            free, self.brands, min_frames=self.config.caption_min_frames, title=evidence.title
        ):
            shown = sorted(
                (x.first_t, x.last_t) for x in free if names_agree(" ".join(x.text.split()), m.text, 0.85)
            )
            for first, last in shown:
                if out and out[-1][2] == m.text and first - out[-1][1] <= self.config.ocr_merge_gap_s:
                    out[-1] = (out[-1][0], max(out[-1][1], last), m.text)
                else:
                    out.append((first, last, m.text))
        out.sort()
        return [
            TimeRange(start=a, end=b, reason="on-screen product caption", origin="ocr") for a, b, _ in out
        ]

    # ------------------------------------------------------------------ pass b
    def candidate(self, time_range: Any, evidence: Any) -> Candidate:
        rng = time_range if isinstance(time_range, TimeRange) else TimeRange.model_validate(time_range)
        ev = evidence if isinstance(evidence, VideoEvidence) else VideoEvidence.model_validate(evidence)
        cfg = self.config
        segs = segments_in(ev.transcript, rng.start, rng.end)
        quotes = [s.text.strip() for s in segs if s.text.strip()]
        spoken = " ".join(quotes)
        lo, hi = rng.start - cfg.ocr_window_s, rng.end + cfg.ocr_window_s
        ocr = [  # on-screen texts of the range, each cut to the range's window
            x.clipped(lo, hi)
            for x in ev.texts
            if x.overlaps(lo, hi) and x.confidence >= cfg.ocr_min_confidence and x.text.strip()
        ]
        dets = [
            d
            for d in ev.detections
            if rng.start <= d.t <= rng.end and d.confidence >= cfg.detection_min_confidence
        ]
        said = speech_mentions(segs, self.brands)
        shown = caption_mentions(
            ocr,
            self.brands,
            min_frames=1 if said or rng.origin == "ocr" else cfg.caption_min_frames,
            title=ev.title,
        )
        if rng.origin != "ocr":
            # in a speech range an unknown caption counts when it persists or agrees with the speech
            shown = [
                c
                for c in shown
                if c.frames >= cfg.caption_min_frames
                or self.brands.find(c.text)
                or product_type(c.text)
                or any(names_agree(c.text, s.text) for s in said)
            ]
        name, source, agreement = choose_name(said, shown)
        t_name = _when(name, said, shown, rng)
        texts = [(s.start, s.text) for s in segs] + [(x.nearest(t_name), x.text) for x in ocr]
        brand = brand_for(name, texts, t_name, self.brands) if name else None
        category = self._category(dets)
        kinds = _kinds(spoken)

        if rng.origin == "ocr":
            confidence = 0.2 + (0.1 if brand else 0.0) + (0.05 if category else 0.0)
        else:
            confidence = 0.3 + 0.1 * min(3, len(kinds)) + 0.25 * agreement + (0.05 if brand else 0.0)
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
                frame_times=tuple(
                    sorted({round(t, 3) for t in [*(d.t for d in dets), *on_screen_times(ocr)]})
                ),
            ),
            hook_sentence=hook,
            summary=(f"{label}: {hook}" if hook else f"{label} (화면 텍스트)")[:160],
            hashtags=tuple(dict.fromkeys(tags))[:5],
            confidence=round(min(confidence, 0.95), 3),
        )

    # ------------------------------------------------------------------ helpers
    def _brand_in(self, text: str) -> str | None:
        return self.brands.first(text)

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
            return sum(cue_hits(q, k) for k in ("recommend", "positive", "emphasis")) + len(
                re.findall(r"!+", q)
            )

        return max(quotes, key=strength)[:120]


def _when(name: str | None, said: Sequence[Mention], shown: Sequence[Mention], rng: TimeRange) -> float:
    for m in [*said, *shown]:
        if name and names_agree(m.text, name):
            return m.t
    return rng.start


def build_rules(config: RulesConfig | Mapping[str, Any] | None = None) -> RulesAnalyzer:
    cfg = config if isinstance(config, RulesConfig) else RulesConfig.model_validate(dict(config or {}))
    return RulesAnalyzer(cfg)
