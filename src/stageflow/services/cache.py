"""A TTL response cache for API results (commerce search: 1 h): in the store's api_cache table when
a store is given (shared across runs and processes), else in memory. Clock injectable.

Caches only data the caller says may be cached; never stores credentials or headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TtlCache:
    def __init__(
        self, service: str, ttl_s: float, *, store: Any | None = None, clock: Callable[[], float] = time.time
    ):
        self.service, self.ttl_s, self.store, self.clock = service, ttl_s, store, clock
        self._memory: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        not_before = self.clock() - self.ttl_s
        if self.store is not None:
            return self.store.cache_get(self.service, key, not_before=not_before)
        hit = self._memory.get(key)
        return hit[1] if hit and hit[0] >= not_before else None

    def put(self, key: str, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        if self.store is not None:
            self.store.cache_put(self.service, key, value, fetched_at=self.clock())
        else:
            self._memory[key] = (self.clock(), value)
