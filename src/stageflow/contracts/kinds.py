"""The stage kinds: each kind (a ``register_<kind>`` hook) and the Protocol its backends satisfy, and
the contract modules, one per family.

Adding a kind: its Protocol in one family module, an entry here, its hookspec.
"""

from __future__ import annotations

from stageflow.contracts.analysis import Analyzer
from stageflow.contracts.build import BuildCache, BuildRunner
from stageflow.contracts.commerce import CommerceApi
from stageflow.contracts.deploy import DeployHook, Transport
from stageflow.contracts.media import Detector, Downloader, OcrEngine, Source, Transcriber
from stageflow.contracts.ops import Check, Notifier, Sink

__all__ = ["FAMILIES", "KINDS"]

#: Stage kind -> the Protocol its backends satisfy. Each kind has a hook ``register_<kind>``.
KINDS: dict[str, type] = {
    "sources": Source,
    "downloaders": Downloader,
    "transcribers": Transcriber,
    "detectors": Detector,
    "ocr_engines": OcrEngine,
    "analyzers": Analyzer,
    "commerce": CommerceApi,
    "sinks": Sink,
    "notifiers": Notifier,
    "transports": Transport,
    "build_runners": BuildRunner,
    "build_caches": BuildCache,
    "deploy_hooks": DeployHook,
    "checks": Check,
}

#: The contract modules, one per family (tests/test_contracts.py: every kind's Protocol is in one).
FAMILIES: tuple[str, ...] = (
    "stageflow.contracts.media",
    "stageflow.contracts.analysis",
    "stageflow.contracts.commerce",
    "stageflow.contracts.deploy",
    "stageflow.contracts.build",
    "stageflow.contracts.ops",
)
