"""Contracts of the commerce family: searching a shop for a product and linking to it.

Protocol: :class:`CommerceApi`; data: :class:`Product` (one search result, backend-neutral: a
backend's own product type subclasses it, as Coupang's does with ``is_rocket``),
:class:`CommerceMatch` (the product accepted for a candidate, as stored and reviewed) and
:class:`CommerceContext` (what a run hands each backend before any work).

Lifecycle: a backend MAY define ``preflight(self, context: CommerceContext) -> None``, called by the
analysis run right after building it, in the thread that uses it and before any video (open what it
keeps, take the run's ``context.notify``; raise a stageflow error to refuse, e.g. missing
credentials), and ``close(self) -> None`` (close its HTTP client, and what its preflight opened). They
are not required members of the Protocol.

This module is the bottom floor: standard library and pydantic only.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if typing.TYPE_CHECKING:  # a name only: importing the ops family is not needed at run time
    from stageflow.contracts.ops import Message

__all__ = ["CommerceApi", "CommerceContext", "CommerceMatch", "Product"]


@dataclass(frozen=True)
class Product:
    """One product a commerce backend found. ``url`` is the product page (or already a partner link);
    ``price`` in the shop's currency, None when unknown."""

    product_id: str
    title: str
    price: float | None
    url: str
    image: str | None = None
    category: str | None = None


class CommerceMatch(BaseModel):
    """The product matched to a candidate: ``url`` is the link to show (a partner link where the
    backend makes one); ``similarity`` 0..1 between the candidate's name and the product title."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: str
    title: str
    price: float | None = None
    url: str
    similarity: float


@dataclass(frozen=True)
class CommerceContext:
    """What the analysis run hands each commerce backend's ``preflight``: ``notify(message)`` posts
    through the run's notifier (stageflow.toml's [notify], or the run's own), e.g. a backend's
    monthly-budget alerts; it raises a stageflow error when the notifier fails."""

    notify: Callable[[Message], None]


@runtime_checkable
class CommerceApi(Protocol):
    """A shop's product search. ``search`` returns at most ``limit`` products, best first;
    ``deeplink`` turns product URLs into the links to publish (one per URL, same order; a backend
    without partner links returns the URLs unchanged)."""

    def search(self, keyword: str, limit: int = 10) -> Sequence[Product]: ...
    def deeplink(self, urls: Sequence[str]) -> list[str]: ...
