"""Analysis-side input and output models. They are contracts now (:mod:`stageflow.contracts.analysis`,
the commerce match in :mod:`stageflow.contracts.commerce`) and are re-exported here so existing
imports keep working; what stays here is the helper the analyzers share over them.

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
from stageflow.contracts.analysis import TimeRange as TimeRange
from stageflow.contracts.analysis import VideoEvidence as VideoEvidence
from stageflow.contracts.analysis import candidate_id as candidate_id
from stageflow.contracts.commerce import CommerceMatch as CommerceMatch


def segments_in(segments: Sequence[SegmentIn], start: float, end: float) -> list[SegmentIn]:
    """Segments overlapping [start, end] (touching is not overlapping; a point range takes the
    segments that contain it)."""
    if end <= start:
        return [s for s in segments if s.start <= start <= s.end]
    return [s for s in segments if s.start < end and s.end > start]
