"""Monthly call budget of a paid or quota-limited API: alerts once at 70/80/90/95 % and refuses new
calls from 95 % on. Usage is counted from the store's api_calls table when a store is given (so it
survives restarts), else in memory. With a store each alert is sent once per threshold per month
across all processes (claimed in the store's notifications table; released again if delivery fails).

Never makes a call itself; it only says yes or no and raises alerts through a callback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stageflow.errors import BudgetExhausted

THRESHOLDS = (70, 80, 90, 95)
BLOCK_AT = 95


def month_start(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat(timespec="seconds")


class BudgetGuard:
    def __init__(
        self,
        service: str,
        monthly_limit: int,
        *,
        store: Any | None = None,
        alert: Callable[[int, int, int], None] | None = None,
    ):
        """``alert(percent_threshold, used, limit)`` is called once per threshold crossed."""
        self.service, self.limit, self.store = service, monthly_limit, store
        self.alert = alert
        self._memory_used = 0
        self._alerted: set[int] = set()

    def used(self) -> int:
        if self.store is not None:
            return self.store.count_api_calls(self.service, month_start())
        return self._memory_used

    def check(self) -> None:
        """Raise BudgetExhausted when usage has reached 95 % of the monthly limit."""
        if self.limit <= 0:
            return
        used = self.used()
        pct = used * 100 / self.limit
        for threshold in THRESHOLDS:
            if pct >= threshold and threshold not in self._alerted:
                self._alerted.add(threshold)
                if self.alert:
                    self._send(threshold, used)
        if pct >= BLOCK_AT:
            raise BudgetExhausted(
                f"{self.service}: monthly budget {used}/{self.limit} calls used (>= {BLOCK_AT} %): new calls "
                f"are blocked until next month; raise monthly_budget in the config to continue"
            )

    def _send(self, threshold: int, used: int) -> None:
        assert self.alert is not None
        if self.store is None or not hasattr(self.store, "claim_notification"):
            self.alert(threshold, used, self.limit)
            return
        key = f"budget-alert:{self.service}:{month_start()[:7]}:{threshold}"
        if not self.store.claim_notification(key, notifier="budget", target=self.service):
            return  # another process (or an earlier run this month) sent it
        try:
            self.alert(threshold, used, self.limit)
        except Exception:  # noqa: BLE001 - an undelivered alert is retried by the next check
            self.store.release_notification(key)
            self._alerted.discard(threshold)

    def record(self, endpoint: str, http_status: int | None, ok: bool) -> None:
        if self.store is not None:
            self.store.record_api_call(self.service, endpoint, http_status, ok)
        else:
            self._memory_used += 1
