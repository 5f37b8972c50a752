"""The public plugin API: everything a stageflow plugin imports, from one place.

This module is the stable surface behind ``STAGEFLOW_PLUGIN_API`` (:data:`PLUGIN_API_VERSION`): within
one major version, every name in ``__all__`` keeps its meaning, a Protocol gains no required member and
a data type gains fields only with defaults. What it does not cover: every other ``stageflow.*`` module
(engines, the store, the CLI, the built-in plugins), which may change in any release. See
docs/plugins.md, "The plugin API".

    from stageflow.api import Message, hookimpl

    STAGEFLOW_PLUGIN_API = 1

    class MyNotifier:
        def notify(self, message: Message) -> None: ...

    @hookimpl
    def register_notifiers(register):
        register("my-notifier", MyNotifier)

Importing it is cheap: pluggy, pydantic and the contracts (no Prefect, no engine, no plugin loading).
"""

from __future__ import annotations

from stageflow import PLUGIN_API_VERSION
from stageflow.contracts import close, preflight
from stageflow.contracts.analysis import (
    NEEDS_CHECK,
    Analyzer,
    Candidate,
    DetectedObject,
    DetectionIn,
    FrameIn,
    InfluencerStats,
    OcrIn,
    OcrRead,
    OnScreenText,
    RangeEvidence,
    SegmentIn,
    TextIn,
    TimeRange,
    TranscriptLine,
    VideoEvidence,
    candidate_id,
    fold_reads,
)
from stageflow.contracts.build import (
    BuildCache,
    BuildOutcome,
    BuildRunner,
    BuildTask,
    CacheEntryCorrupt,
    CacheHit,
    ChildProcess,
    ProcessTracker,
    Workspace,
)
from stageflow.contracts.commerce import CommerceApi, CommerceContext, CommerceMatch, Product
from stageflow.contracts.deploy import (
    ChangeSet,
    DeployContext,
    DeployHook,
    DeployTarget,
    HookOutcome,
    TransferStats,
    Transport,
)
from stageflow.contracts.kinds import KINDS
from stageflow.contracts.media import (
    Detection,
    Detector,
    Downloader,
    Frame,
    MediaItem,
    OcrEngine,
    OcrText,
    Segment,
    Source,
    TextSpan,
    Transcriber,
    Transcript,
    Word,
    spans,
)
from stageflow.contracts.ops import Check, CheckResult, Message, Notifier, Sink
from stageflow.errors import (
    AnalysisFailed,
    BadInput,
    BudgetExhausted,
    CircuitOpen,
    ConfigError,
    DuplicateBackendError,
    IllegalTransition,
    IntegrityError,
    JobFailed,
    MissingDependencyError,
    PluginError,
    RateLimited,
    Refused,
    ServiceAuthError,
    ServiceError,
    SettingsError,
    StageflowError,
    UnknownBackendError,
)
from stageflow.hookspecs import Register, hookimpl

__all__ = [
    # plugin machinery
    "KINDS",
    "PLUGIN_API_VERSION",
    "Register",
    "close",
    "hookimpl",
    "preflight",
    # media
    "Detection",
    "Detector",
    "Downloader",
    "Frame",
    "MediaItem",
    "OcrEngine",
    "OcrText",
    "Segment",
    "Source",
    "TextSpan",
    "Transcriber",
    "Transcript",
    "Word",
    "spans",
    # analysis
    "NEEDS_CHECK",
    "Analyzer",
    "Candidate",
    "DetectedObject",
    "DetectionIn",
    "FrameIn",
    "InfluencerStats",
    "OcrIn",
    "OcrRead",
    "OnScreenText",
    "RangeEvidence",
    "SegmentIn",
    "TextIn",
    "TimeRange",
    "TranscriptLine",
    "VideoEvidence",
    "candidate_id",
    "fold_reads",
    # commerce
    "CommerceApi",
    "CommerceContext",
    "CommerceMatch",
    "Product",
    # deploy
    "ChangeSet",
    "DeployContext",
    "DeployHook",
    "DeployTarget",
    "HookOutcome",
    "TransferStats",
    "Transport",
    # build
    "BuildCache",
    "BuildOutcome",
    "BuildRunner",
    "BuildTask",
    "CacheEntryCorrupt",
    "CacheHit",
    "ChildProcess",
    "ProcessTracker",
    "Workspace",
    # ops
    "Check",
    "CheckResult",
    "Message",
    "Notifier",
    "Sink",
    # errors
    "AnalysisFailed",
    "BadInput",
    "BudgetExhausted",
    "CircuitOpen",
    "ConfigError",
    "DuplicateBackendError",
    "IllegalTransition",
    "IntegrityError",
    "JobFailed",
    "MissingDependencyError",
    "PluginError",
    "RateLimited",
    "Refused",
    "ServiceAuthError",
    "ServiceError",
    "SettingsError",
    "StageflowError",
    "UnknownBackendError",
]
