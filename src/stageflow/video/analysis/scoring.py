"""Attractiveness scoring, exactly as the original system computed it:

    attractiveness = round((0.50*S + 0.35*E + 0.15*I) * 100)
    S = .35 positive + .25 exclamation + .20 emphasis + .20 emotion - .15 negative   (clamped to 0..1)
    E = .30 usage + .25 demonstration + .20 effect + .15 experience + .10 possession
    I = .25 log-scaled subscribers + .35 engagement + .25 consistency + .15 authenticity
    bands: >= 80 high, >= 60 medium, >= 40 low, else very_low

Each sub-score is in 0..1. How a sub-score is read from text (cue counts, saturating) is this
module's choice and documented on each function. Pure functions: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.video.analysis.evidence import InfluencerStats
from stageflow.video.analysis.lexicon import cue_hits


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def _sat(hits: int, full: int) -> float:
    """``hits`` cue hits, saturating at ``full`` (-> 1.0)."""
    return _clamp(hits / full)


@dataclass(frozen=True)
class Sentiment:
    positive: float = 0.0
    exclamation: float = 0.0
    emphasis: float = 0.0
    emotion: float = 0.0
    negative: float = 0.0

    @property
    def value(self) -> float:
        return _clamp(
            0.35 * self.positive
            + 0.25 * self.exclamation
            + 0.20 * self.emphasis
            + 0.20 * self.emotion
            - 0.15 * self.negative
        )


@dataclass(frozen=True)
class Endorsement:
    usage: float = 0.0
    demonstration: float = 0.0
    effect: float = 0.0
    experience: float = 0.0
    possession: float = 0.0

    @property
    def value(self) -> float:
        return _clamp(
            0.30 * self.usage
            + 0.25 * self.demonstration
            + 0.20 * self.effect
            + 0.15 * self.experience
            + 0.10 * self.possession
        )


@dataclass(frozen=True)
class Influence:
    subscribers: float = 0.0
    engagement: float = 0.0
    consistency: float = 0.0
    authenticity: float = 0.0

    @property
    def value(self) -> float:
        return _clamp(
            0.25 * self.subscribers
            + 0.35 * self.engagement
            + 0.25 * self.consistency
            + 0.15 * self.authenticity
        )


def attractiveness(s: Sentiment, e: Endorsement, i: Influence) -> int:
    return round((0.50 * s.value + 0.35 * e.value + 0.15 * i.value) * 100)


def band(score: int) -> str:
    if score >= 80:
        return "high"
    if score >= 60:
        return "medium"
    if score >= 40:
        return "low"
    return "very_low"


def sentiment_of(quotes: Sequence[str]) -> Sentiment:
    """positive: 3 cues = 1.0; exclamation: 3 '!' = 1.0; emphasis: 3 cues; emotion: 2 cues;
    negative: 2 cues."""
    text = " ".join(quotes)
    return Sentiment(
        positive=_sat(cue_hits(text, "positive"), 3),
        exclamation=_sat(text.count("!") + text.count("!"), 3),
        emphasis=_sat(cue_hits(text, "emphasis"), 3),
        emotion=_sat(cue_hits(text, "emotion"), 2),
        negative=_sat(cue_hits(text, "negative"), 2),
    )


def endorsement_of(quotes: Sequence[str]) -> Endorsement:
    """Each sub-score: 2 cues of its kind = 1.0 (one cue = 0.5)."""
    text = " ".join(quotes)
    return Endorsement(
        usage=_sat(cue_hits(text, "usage"), 2),
        demonstration=_sat(cue_hits(text, "demonstration"), 2),
        effect=_sat(cue_hits(text, "effect"), 2),
        experience=_sat(cue_hits(text, "experience"), 2),
        possession=_sat(cue_hits(text, "possession"), 2),
    )


def influence_of(stats: InfluencerStats) -> Influence:
    """subscribers: log10(n) / 7 (10 M = 1.0); engagement: rate / 0.10 (10 % = 1.0); consistency and
    authenticity as given. Unknown = 0."""
    subs = stats.subscribers or 0
    return Influence(
        subscribers=_clamp(math.log10(subs) / 7) if subs > 1 else 0.0,
        engagement=_clamp((stats.engagement_rate or 0.0) / 0.10),
        consistency=_clamp(stats.consistency or 0.0),
        authenticity=_clamp(stats.authenticity or 0.0),
    )


def score_quotes(quotes: Sequence[str], stats: InfluencerStats) -> tuple[int, str]:
    """(attractiveness, band) of a candidate's quotes on a channel."""
    value = attractiveness(sentiment_of(quotes), endorsement_of(quotes), influence_of(stats))
    return value, band(value)
