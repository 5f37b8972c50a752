"""Resilience parts shared by the service clients (Coupang, Gemini, Sheets, plugins): a token bucket per
endpoint, a circuit breaker, and a retry loop honouring Retry-After on 429/5xx.

Clocks and sleeps are injectable so tests never wait on wall time. This module never logs request
bodies, headers or secrets.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stageflow.errors import CircuitOpen, RateLimited

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass
class TokenBucket:
    """``capacity`` tokens refilled evenly over ``per_s`` seconds (e.g. 10 per 3600 s). ``acquire``
    waits up to ``max_wait_s`` for a token, else raises RateLimited."""

    name: str
    capacity: int
    per_s: float
    max_wait_s: float = 0.0
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    _tokens: float = field(init=False)
    _last: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = float(self.capacity)
        self._last = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.capacity / self.per_s)
        self._last = now

    def acquire(self) -> None:
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return
            wait = (1 - self._tokens) * self.per_s / self.capacity
            if wait > self.max_wait_s:
                raise RateLimited(
                    f"{self.name}: local rate limit of {self.capacity} calls per {self.per_s:g} s reached; "
                    f"next call possible in {wait:.0f} s (raise the limit in the config if your quota allows)"
                )
            self.sleep(wait)
            self._refill()
            self._tokens = max(0.0, self._tokens - 1)


@dataclass
class SharedTokenBucket:
    """The same bucket kept in the stageflow store (``rate_buckets``), so every process using the
    store — CLI runs, cron jobs, flow workers — draws from one quota. Wall clock, since processes do
    not share a monotonic clock. ``block(until)`` empties it until the service's quota resets."""

    name: str
    capacity: int
    per_s: float
    store: Any
    max_wait_s: float = 0.0
    clock: Clock = time.time
    sleep: Sleep = time.sleep

    def acquire(self) -> None:
        for _ in range(2):
            wait = self.store.take_token(
                self.name, capacity=self.capacity, per_s=self.per_s, now=self.clock()
            )
            if wait <= 0:
                return
            if wait > self.max_wait_s:
                raise RateLimited(
                    f"{self.name}: shared rate limit of {self.capacity} calls per {self.per_s:g} s reached "
                    f"(all processes using this store); next call possible in {wait:.0f} s (raise the limit "
                    "in the config if your quota allows)"
                )
            self.sleep(wait)
        raise RateLimited(f"{self.name}: no token after waiting; another process took it, retry later")

    def block(self, until: float) -> None:
        self.store.block_bucket(self.name, until=until, now=self.clock())


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures and refuses calls for ``cooldown_s``; then one
    trial call is let through (half-open): success closes it, failure re-opens it."""

    name: str
    threshold: int = 3
    cooldown_s: float = 300.0
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    last_error: str = ""

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and self.clock() - self.opened_at < self.cooldown_s

    def before_call(self) -> None:
        if self.is_open:
            left = self.cooldown_s - (self.clock() - (self.opened_at or 0.0))
            raise CircuitOpen(
                f"{self.name}: circuit open after {self.failures} failures (last: {self.last_error}); "
                f"calls refused for {left:.0f} s more: fix the cause, then retry"
            )

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; backoff ``base_s * 2**n`` with jitter, Retry-After honoured but
    capped at ``max_backoff_s``."""

    attempts: int = 3
    base_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff_s)
        return min(self.base_s * (2**attempt) * (1 + random.random() * 0.1), self.max_backoff_s)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class Retryable(Exception):
    """Raised inside a retried function for a transient failure (429, 5xx, timeout, bad JSON)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def with_retries(fn: Callable[[], T], policy: RetryPolicy, sleep: Sleep, on_give_up: Callable[[str], T]) -> T:
    """Call ``fn`` until it returns; a ``Retryable`` is retried per ``policy``; after the last attempt
    ``on_give_up(last message)`` decides (usually raises). Any other exception propagates at once."""
    last = ""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Retryable as exc:
            last = str(exc)
            if attempt + 1 < policy.attempts:
                sleep(policy.delay(attempt, exc.retry_after))
    return on_give_up(last)
