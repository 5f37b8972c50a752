"""Contracts of the operations family: writing results, telling people, and probing health.

Protocols: :class:`Sink`, :class:`Notifier`, :class:`Check`; data: :class:`Message`,
:class:`CheckResult`.

Lifecycle: a backend MAY define ``preflight(self) -> None`` (raise a stageflow error to refuse before
any work, e.g. a missing token) and ``close(self) -> None`` (flush, close clients); see
:func:`stageflow.contracts.preflight` / :func:`stageflow.contracts.close`. Not required members.

Bottom floor: standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Check", "CheckResult", "Message", "Notifier", "Sink"]


@dataclass(frozen=True)
class Message:
    """A notification. ``fields`` become a table or key/value list where the notifier supports it."""

    title: str
    text: str = ""
    level: str = "info"  # info | warning | error
    link: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one monitor probe."""

    name: str
    ok: bool
    detail: str = ""


@runtime_checkable
class Sink(Protocol):
    """Writes ``records`` (JSON-like mappings: values are str, numbers, bools, None, lists and dicts of
    them; typed ``Any`` for that reason) into ``table``; returns the rows written. Idempotent by key:
    writing a record twice leaves one row."""

    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int: ...


@runtime_checkable
class Notifier(Protocol):
    def notify(self, message: Message) -> None: ...


@runtime_checkable
class Check(Protocol):
    """A monitor probe: ``ok=False`` with a ``detail`` for an unhealthy thing (a probe that raises or
    overruns its timeout counts as failing too)."""

    def probe(self) -> CheckResult: ...
