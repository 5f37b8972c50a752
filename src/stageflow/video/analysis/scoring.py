"""Attractiveness scoring, exactly as the original system computed it:

    attractiveness = round((0.50*S + 0.35*E + 0.15*I) * 100)
    S = .35 positive + .25 exclamation + .20 emphasis + .20 emotion - .15 negative   (clamped to 0..1)
    E = .30 usage + .25 demonstration + .20 effect + .15 experience + .10 possession
    I = .25 log-scaled subscribers + .35 engagement + .25 consistency + .15 authenticity
    bands: >= 80 high, >= 60 medium, >= 40 low, else very_low

Each sub-score is in 0..1. How a sub-score is read from text (weighted, negation-aware cue counts
that saturate after two or three cues, so one gushing sentence reaches the top) is this module's
choice and documented on each function. Pure functions: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.video.analysis.evidence import InfluencerStats
from stageflow.video.analysis.lexicon import (
    CONVICTION_WEIGHT,
    conviction_hits,
    cue_hits,
    cue_weight,
    hedged,
    negated_hits,
    strip_calls_to_action,
)


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


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


def _curve(weight: float, full: float) -> float:
    """Saturating reading of a weighted cue count: linear up to ``full`` (-> 1.0)."""
    return _clamp(weight / full)


def _text(quotes: Sequence[str]) -> str:
    return strip_calls_to_action(" ".join(quotes))


@dataclass(frozen=True)
class Conviction:
    """Conviction cues found in a candidate's quotes (lexicon.CONVICTION), after polarity and
    hedging: zero when the speaker's negative cues are as many as the praise and conviction
    cues together ("솔직히 저한테는 별로였어요"), halved when the speaker hedges."""

    repurchase: float = 0.0
    duration: float = 0.0
    loyalty: float = 0.0
    verdict: float = 0.0

    @property
    def total(self) -> float:
        return self.repurchase + self.duration + self.loyalty + self.verdict


def conviction_of(text: str) -> Conviction:
    hits = conviction_hits(text)
    praise = cue_hits(text, "positive", negation=True) + cue_hits(text, "recommend", negation=True)
    neg = cue_hits(text, "negative") + negated_hits(text, "positive") + negated_hits(text, "recommend")
    if neg and neg >= praise + sum(hits.values()):
        return Conviction()
    k = 0.5 if hedged(text) else 1.0
    kinds = ("repurchase", "duration", "loyalty", "verdict")
    return Conviction(*(k * CONVICTION_WEIGHT[kind] * hits[kind] for kind in kinds))


def sentiment_of(quotes: Sequence[str]) -> Sentiment:
    """Read from the quotes with calls to action removed ("구독 좋아요" is not praise):

    positive: praise + recommendation cues ("좋아요", "추천", "강추"; strong cues weigh 2) plus
    conviction cues (``conviction_of``: "재구매", "2년째", "정착", "honestly the best", "I'd buy it
    again"); negated ones ("추천 안 해요", "not great") count as negative instead; 1.5 = 1.0 (one
    plain cue 0.67), halved when the speaker hedges ("나쁘지 않아요"). exclamation: runs of "!" (each
    run once: "!!!" is one), 2 = 1.0. emphasis: emphasis cues + conviction cues, 2 = 1.0. emotion:
    emotion cues + conviction cues, 2 = 1.0 (a calm, sincere speaker shows conviction by what they
    report, not by "!" or "대박", so conviction stands for emphasis and attachment). negative:
    negative cues + negated praise, 2 = 1.0."""
    text = _text(quotes)
    praise = cue_weight(text, "positive") + cue_weight(text, "recommend")
    if hedged(text):
        praise /= 2
    conv = conviction_of(text).total
    neg = cue_hits(text, "negative") + negated_hits(text, "positive") + negated_hits(text, "recommend")
    return Sentiment(
        positive=_curve(praise + conv, 1.5),
        exclamation=_curve(len(re.findall(r"[!！]+", text)), 2),
        emphasis=_curve(cue_hits(text, "emphasis") + conv, 2),
        emotion=_curve(cue_hits(text, "emotion") + conv, 2),
        negative=_curve(neg, 2),
    )


def endorsement_of(quotes: Sequence[str]) -> Endorsement:
    """Each sub-score: cue weight 1.5 = 1.0 (one ordinary cue = 0.67, one strong cue such as "매일
    써요" = 1.0); negated cues ("안 써요") do not count. experience also counts the speaker's own verdict
    (recommendation cues: "추천", "재구매", "인생템") and every conviction cue, since that is what a
    recommendation reports; usage also counts long use and loyalty ("2년째", "계속 쓰게 돼요", "for
    over a year", "switched to"); possession also counts repurchase ("세 번째 재구매", "bought it
    again")."""
    text = _text(quotes)
    rec = cue_weight(text, "recommend")
    if hedged(text):
        rec /= 2
    conv = conviction_of(text)
    return Endorsement(
        usage=_curve(cue_weight(text, "usage") + conv.duration + conv.loyalty, 1.5),
        demonstration=_curve(cue_weight(text, "demonstration"), 1.5),
        effect=_curve(cue_weight(text, "effect"), 1.5),
        experience=_curve(cue_weight(text, "experience") + rec + conv.total, 1.5),
        possession=_curve(cue_weight(text, "possession") + conv.repurchase, 1.5),
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
