"""The typed contracts between stageflow's engines and its backends: one module per family, each
holding its Protocols and the data types that cross its stage boundary.

=============  ===========================================================================
``media``      Source, Downloader, Transcriber, Detector, OcrEngine (+ MediaItem, Frame, ...)
``analysis``   Analyzer (+ VideoEvidence, TimeRange, Candidate, ...)
``commerce``   CommerceApi (+ Product, CommerceMatch)
``deploy``     Transport, DeployHook (+ ChangeSet, TransferStats, DeployContext, HookOutcome)
``build``      BuildRunner, BuildCache (+ Workspace, BuildTask, BuildOutcome, ...)
``ops``        Sink, Notifier, Check (+ Message, CheckResult)
=============  ===========================================================================

:data:`stageflow.contracts.kinds.KINDS` maps each stage kind (``register_<kind>`` hook) to the
Protocol its backends satisfy. Importing one family module loads only that module (this package
imports none of them), so the deploy contracts never pull in pydantic.

Every backend MAY define two lifecycle methods, which are *not* required members of the Protocols (so
backends written before them still satisfy their kind): ``preflight(self) -> None`` raises a
:class:`~stageflow.errors.StageflowError` to refuse before any work is done, and ``close(self) -> None``
releases what the backend holds. :func:`preflight` and :func:`close` call them when present.

This package is the bottom floor of the house: it imports only the standard library, pydantic and
:mod:`stageflow.errors` (tests/test_contracts.py checks it). Plugins reach it through
:mod:`stageflow.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

__all__ = ["close", "preflight"]


def _optional(backend: object, name: str) -> Callable[[], object] | None:
    method = getattr(backend, name, None)
    return cast("Callable[[], object]", method) if callable(method) else None


def preflight(backend: object) -> None:
    """Call ``backend.preflight()`` when the backend defines it: its stageflow error (a refusal)
    propagates to the caller, before any work is done."""
    method = _optional(backend, "preflight")
    if method is not None:
        method()


def close(backend: object) -> None:
    """Call ``backend.close()`` when the backend defines it (safe to call on any backend)."""
    method = _optional(backend, "close")
    if method is not None:
        method()
