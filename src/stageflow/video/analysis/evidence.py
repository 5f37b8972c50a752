"""Analysis-side input and output models. They are contracts now (:mod:`stageflow.contracts.analysis`,
the commerce match in :mod:`stageflow.contracts.commerce`) and are re-exported here so existing
imports keep working; what stays here is the helpers the analyzers share over them.

On-screen text is read as part 1's merged ``texts``: one item per text per on-screen interval, with
its first and last time and the number of kept frames it was read on (a caption on screen 2-20 s is
one item, not ten reads). A document that has only per-frame ``ocr`` reads (hand-written, or from
before ``texts``) is folded into the same items by part 1's rule (:func:`stageflow.contracts.media.spans`).
Per-frame boxes stay with part 1, where the clip's crop and the thumbnail need them.

This module never calls a model, a service or the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from stageflow.contracts.analysis import NEEDS_CHECK as NEEDS_CHECK
from stageflow.contracts.analysis import Candidate as Candidate
from stageflow.contracts.analysis import DetectionIn as DetectionIn
from stageflow.contracts.analysis import FrameIn as FrameIn
from stageflow.contracts.analysis import InfluencerStats as InfluencerStats
from stageflow.contracts.analysis import OcrIn as OcrIn
from stageflow.contracts.analysis import RangeEvidence as RangeEvidence
from stageflow.contracts.analysis import SegmentIn as SegmentIn
from stageflow.contracts.analysis import TextIn as TextIn
from stageflow.contracts.analysis import TimeRange as TimeRange
from stageflow.contracts.analysis import VideoEvidence as VideoEvidence
from stageflow.contracts.analysis import candidate_id as candidate_id
from stageflow.contracts.analysis import fold_reads as fold_reads
from stageflow.contracts.commerce import CommerceMatch as CommerceMatch


def segments_in(segments: Sequence[SegmentIn], start: float, end: float) -> list[SegmentIn]:
    """Segments overlapping [start, end] (touching is not overlapping; a point range takes the
    segments that contain it)."""
    if end <= start:
        return [s for s in segments if s.start <= start <= s.end]
    return [s for s in segments if s.start < end and s.end > start]


def on_screen_times(texts: Sequence[TextIn]) -> list[float]:
    """The first and last sighting of each item: the kept frames a candidate's texts came from."""
    return [t for x in texts for t in (x.first_t, x.last_t)]
