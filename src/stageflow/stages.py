"""Compatibility re-exports: the contracts moved to :mod:`stageflow.contracts` (one module per
family) and plugins import them from :mod:`stageflow.api`. Every name that lived here still imports
from here; new code imports from the contracts (or the facade).
"""

from __future__ import annotations

from stageflow.contracts.analysis import Analyzer as Analyzer
from stageflow.contracts.build import BuildCache as BuildCache
from stageflow.contracts.build import BuildRunner as BuildRunner
from stageflow.contracts.commerce import CommerceApi as CommerceApi
from stageflow.contracts.deploy import DeployHook as DeployHook
from stageflow.contracts.deploy import TransferStats as TransferStats
from stageflow.contracts.deploy import Transport as Transport
from stageflow.contracts.kinds import KINDS as KINDS
from stageflow.contracts.media import Detection as Detection
from stageflow.contracts.media import Detector as Detector
from stageflow.contracts.media import Downloader as Downloader
from stageflow.contracts.media import Frame as Frame
from stageflow.contracts.media import MediaItem as MediaItem
from stageflow.contracts.media import OcrEngine as OcrEngine
from stageflow.contracts.media import OcrText as OcrText
from stageflow.contracts.media import Segment as Segment
from stageflow.contracts.media import Source as Source
from stageflow.contracts.media import Transcriber as Transcriber
from stageflow.contracts.media import Transcript as Transcript
from stageflow.contracts.media import Word as Word
from stageflow.contracts.ops import Check as Check
from stageflow.contracts.ops import CheckResult as CheckResult
from stageflow.contracts.ops import Message as Message
from stageflow.contracts.ops import Notifier as Notifier
from stageflow.contracts.ops import Sink as Sink
