"""The Coupang Partners Open API client (httpx): product search and deeplinks, CEA-signed, with a
1 h search cache, a token bucket per endpoint, a circuit breaker, retries on 429/5xx honouring
Retry-After, and a monthly budget guard.

Credentials come from the config (SecretStr), env vars COUPANG_ACCESS_KEY / COUPANG_SECRET_KEY, or
Prefect Secret blocks; they never appear in logs, errors or cached data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, SecretStr

from stageflow.commerce.signing import authorization
from stageflow.contracts.commerce import CommerceContext, Product
from stageflow.contracts.ops import Message
from stageflow.errors import BadInput, RateLimited, ServiceAuthError, ServiceError, StageflowError
from stageflow.services.budget import BudgetGuard
from stageflow.services.cache import TtlCache
from stageflow.services.resilience import (
    CircuitBreaker,
    Retryable,
    RetryPolicy,
    SharedTokenBucket,
    TokenBucket,
    parse_retry_after,
    with_retries,
)

SERVICE = "coupang"
#: Words in a 403 answer that mean "quota spent", not "wrong keys".
_QUOTA_WORDS = ("limit", "quota", "exceed", "too many", "초과", "제한", "횟수")


class QuotaExceeded(RateLimited):
    """Coupang refused the call because the account's quota is spent (HTTP 403 / rCode 403)."""

    def __init__(self, message: str, reset_at: float):
        super().__init__(message)
        self.reset_at = reset_at


def is_partner_link(url: str) -> bool:
    """A URL that already is a Coupang Partners link (search results' productUrl): never deeplinked
    again."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.netloc.lower() == "link.coupang.com" or "lptag=" in parts.query


class CoupangConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_key: SecretStr | None = None  # default: env COUPANG_ACCESS_KEY
    secret_key: SecretStr | None = None  # default: env COUPANG_SECRET_KEY
    access_key_block: str | None = None  # Prefect Secret block names, used when set
    secret_key_block: str | None = None
    base_url: str = "https://api-gateway.coupang.com"
    search_path: str = "/v2/providers/affiliate_open_api/apis/openapi/products/search"
    deeplink_path: str = "/v2/providers/affiliate_open_api/apis/openapi/deeplink"
    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    search_per_hour: int = 10
    deeplink_per_minute: int = 100
    rate_wait_s: float = 0.0  # how long to wait for a token before refusing the call
    shared_limits: bool = True  # token buckets in the store, shared by every process (when use_store)
    alerts: bool = True  # budget alerts (70/80/90/95 %) through the run's notifier ([notify])
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 300.0
    cache_ttl_s: float = 3600.0  # search results
    deeplink_cache_ttl_s: float = 30 * 86400.0  # a partner link for a product URL does not change
    monthly_budget: int = 10000  # calls per month; 0 = no budget
    use_store: bool = True  # cache, api_calls and budget in the stageflow store


def _secret(value: SecretStr | None, block: str | None, env: str, what: str) -> str:
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if block:
        from prefect.blocks.system import Secret

        secret: Any = Secret.load(block)  # sync_compatible: typed as a coroutine too
        return str(secret.get())
    found = os.environ.get(env, "")
    if not found:
        raise BadInput(
            f"coupang: no {what}: set {env}, or {what.replace(' ', '_')} / a Secret block in the config"
        )
    return found


def budget_alert(service: str, notify: Callable[[Message], None]) -> Callable[[int, int, int], None]:
    """The budget guard's alert callback: a message through ``notify`` (the run's notifier, handed in
    by the preflight context). A notifier failure is logged and raised back to the guard, which
    releases the alert's claim so a later check sends it again; it never fails the analysis."""

    def alert(threshold: int, used: int, limit: int) -> None:
        import logging

        message = Message(
            title=f"{service}: {threshold}% of the monthly API budget used",
            text=f"{used} of {limit} calls this month. New calls are blocked at 95 %; raise "
            f"monthly_budget in [video.{service}] if the quota allows.",
            level="warning" if threshold < 95 else "error",
            fields={"service": service, "threshold": f"{threshold}%", "used": str(used), "limit": str(limit)},
        )
        try:
            notify(message)
        except StageflowError as exc:
            logging.getLogger("stageflow.commerce").warning("%s budget alert not delivered: %s", service, exc)
            raise

    return alert


@dataclass(frozen=True)
class CoupangProduct(Product):
    """A Coupang search result: the backend-neutral :class:`~stageflow.contracts.commerce.Product`
    plus whether it ships with Rocket delivery."""

    is_rocket: bool = False

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CoupangProduct:
        return cls(
            product_id=str(d.get("productId", "")),
            title=str(d.get("productName", "")),
            price=d.get("productPrice"),
            url=str(d.get("productUrl", "")),
            image=d.get("productImage"),
            is_rocket=bool(d.get("isRocket", False)),
            category=d.get("categoryName"),
        )


class CoupangClient:
    """Implements the CommerceApi Protocol: ``search(keyword, limit)`` -> [CoupangProduct],
    ``deeplink(urls)`` -> [short url]."""

    def __init__(
        self,
        config: CoupangConfig,
        *,
        store: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        alert: Callable[[int, int, int], None] | None = None,
    ):
        self.config = config
        self._access = _secret(config.access_key, config.access_key_block, "COUPANG_ACCESS_KEY", "access key")
        self._secret = _secret(config.secret_key, config.secret_key_block, "COUPANG_SECRET_KEY", "secret key")
        self.sleep = sleep
        self.policy = RetryPolicy(config.attempts, config.backoff_s, config.max_backoff_s)
        self.clock, self.wall_clock, self.alert = clock, wall_clock, alert
        self._alert_given = alert is not None
        self.store: Any | None = None
        self._owns_store = False  # opened here (use_store, no store given): closed by close()
        self._ready = False
        if store is not None or not config.use_store:
            self._services(store)
        self.http_calls = 0
        self.cache_hits = 0
        self._http: Any = None

    def _services(self, store: Any | None) -> None:
        """The buckets, breaker, caches and budget over ``store`` (None: in memory)."""
        config, clock, wall_clock, sleep = self.config, self.clock, self.wall_clock, self.sleep
        self.store = store
        limits = {"search": (config.search_per_hour, 3600.0), "deeplink": (config.deeplink_per_minute, 60.0)}
        self.buckets: dict[str, Any] = {
            name: (
                SharedTokenBucket(f"coupang {name}", cap, per, store, config.rate_wait_s, wall_clock, sleep)
                if store is not None and config.shared_limits
                else TokenBucket(f"coupang {name}", cap, per, config.rate_wait_s, clock, sleep)
            )
            for name, (cap, per) in limits.items()
        }
        self.breaker = CircuitBreaker("coupang", config.breaker_threshold, config.breaker_cooldown_s, clock)
        self.cache = TtlCache(SERVICE, config.cache_ttl_s, store=store, clock=wall_clock)
        self.link_cache = TtlCache(
            SERVICE + "-deeplink", config.deeplink_cache_ttl_s, store=store, clock=wall_clock
        )
        self.budget = BudgetGuard(SERVICE, config.monthly_budget, store=store, alert=self.alert)
        self._ready = True

    def preflight(self, context: CommerceContext | None = None) -> None:
        """Open the stageflow store this client keeps its cache, shared rate limits and budget in
        (``use_store``, no store given), in the calling thread: a run calls it before any video, so a
        store that cannot be opened fails there; with ``alerts``, the budget alerts go through the
        run's ``context.notify`` (unless an ``alert`` was given). Building the client opens nothing
        (``validate`` and the analysis check build it only to check its keys); the first search or
        deeplink calls this too (without a context: no alerts). Idempotent."""
        if context is not None and self.config.alerts and not self._alert_given:
            self.alert = budget_alert(SERVICE, context.notify)
            if self._ready:
                self.budget.alert = self.alert
        if self._ready:
            return
        from stageflow.store import open_store

        store = open_store()
        self._owns_store = True
        self._services(store)

    # ------------------------------------------------------------------ public API
    def search(self, keyword: str, limit: int = 10) -> list[CoupangProduct]:
        keyword = keyword.strip()
        if not keyword:
            raise BadInput("coupang search: empty keyword")
        limit = max(1, min(50, int(limit)))
        self.preflight()
        key = f"{keyword}|{limit}"
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return [CoupangProduct(**p) for p in cached]
        query = urlencode({"keyword": keyword, "limit": limit})
        data = self._call("search", "GET", self.config.search_path, query, None)
        items = (data or {}).get("productData") or []
        products = [CoupangProduct.from_api(p) for p in items if isinstance(p, dict)]
        self.cache.put(key, [p.__dict__ for p in products])
        return products

    def deeplink(self, urls: Sequence[str]) -> list[str]:
        if not urls:
            return []
        if all(is_partner_link(u) for u in urls):
            return list(urls)  # already partner links: nothing to convert
        self.preflight()
        cached = [self.link_cache.get(u) for u in urls]
        if all(cached):
            self.cache_hits += 1
            return [str(c) for c in cached]
        data = self._call("deeplink", "POST", self.config.deeplink_path, "", {"coupangUrls": list(urls)})
        rows = data if isinstance(data, list) else []
        by_original = {r.get("originalUrl"): r.get("shortenUrl") for r in rows if isinstance(r, dict)}
        out = []
        for i, url in enumerate(urls):
            short = by_original.get(url) or (rows[i].get("shortenUrl") if i < len(rows) else None)
            if not short:
                raise ServiceError(f"coupang deeplink: no shortenUrl returned for {url}")
            out.append(str(short))
            self.link_cache.put(url, str(short))
        return out

    def close(self) -> None:
        """Close the HTTP client, and the store if this client opened it (a given store is the
        caller's)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store, self._owns_store, self._ready = None, False, False

    # ------------------------------------------------------------------ transport
    def _client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.Client(base_url=self.config.base_url, timeout=self.config.timeout_s)
        return self._http

    def _redact(self, text: str) -> str:
        for secret in (self._secret, self._access):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _quota(self, endpoint: str, resp: Any) -> QuotaExceeded | None:
        """A 403 (HTTP or rCode) whose message speaks of a limit: the quota is spent. The reset time
        is the Retry-After / X-RateLimit-Reset header, else the end of the current window (search:
        the hour, deeplink: the minute); the shared bucket is emptied until then."""
        try:
            payload = resp.json()
        except ValueError:
            payload = {}
        rcode = str(payload.get("rCode", "")) if isinstance(payload, dict) else ""
        msg = self._redact(_message(resp))
        if not (resp.status_code == 403 or rcode == "403"):
            return None
        if not any(w in msg.lower() for w in _QUOTA_WORDS):
            return None
        now = self.wall_clock()
        window = 3600.0 if endpoint == "search" else 60.0
        after = parse_retry_after(resp.headers.get("Retry-After"))
        reset = resp.headers.get("X-RateLimit-Reset")
        if after is not None:
            reset_at = now + after
        elif reset and reset.replace(".", "", 1).isdigit():
            reset_at = float(reset) if float(reset) > 1e9 else now + float(reset)
        else:
            reset_at = (now // window + 1) * window
        bucket = self.buckets[endpoint]
        if hasattr(bucket, "block"):
            bucket.block(reset_at)
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(reset_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return QuotaExceeded(
            f"coupang {endpoint}: quota exceeded (HTTP {resp.status_code}, rCode {rcode or '-'}: {msg}); "
            f"it resets at {when}: wait until then or lower {endpoint}_per_"
            f"{'hour' if endpoint == 'search' else 'minute'} to stay under it",
            reset_at,
        )

    def _call(self, endpoint: str, method: str, path: str, query: str, body: Any) -> Any:
        import httpx

        self.breaker.before_call()
        url = path + (f"?{query}" if query else "")

        def attempt() -> Any:
            self.budget.check()
            self.buckets[endpoint].acquire()
            headers = {
                "Authorization": authorization(self._access, self._secret, method, path, query),
                "Content-Type": "application/json;charset=UTF-8",
            }
            self.http_calls += 1
            try:
                resp = self._client().request(method, url, headers=headers, json=body)
            except httpx.TimeoutException:
                self.budget.record(endpoint, None, False)
                raise Retryable(f"timed out after {self.config.timeout_s:g} s") from None
            except httpx.TransportError as exc:
                self.budget.record(endpoint, None, False)
                raise Retryable(f"connection failed ({type(exc).__name__})") from None
            self.budget.record(endpoint, resp.status_code, resp.is_success)
            quota = self._quota(endpoint, resp)
            if quota is not None:
                raise quota
            if resp.status_code in (401, 403):
                msg = self._redact(_message(resp))
                self.breaker.failure(f"HTTP {resp.status_code}")
                raise ServiceAuthError(
                    f"coupang {endpoint}: HTTP {resp.status_code} {msg}: the access/secret key pair is wrong "
                    f"or revoked; fix COUPANG_ACCESS_KEY / COUPANG_SECRET_KEY (or the Secret blocks)"
                )
            if resp.status_code == 429 or resp.status_code >= 500:
                raise Retryable(
                    f"HTTP {resp.status_code} {self._redact(_message(resp))}",
                    parse_retry_after(resp.headers.get("Retry-After")),
                )
            try:
                payload = resp.json()
            except ValueError:
                raise Retryable(f"HTTP {resp.status_code}: response is not JSON") from None
            if not resp.is_success or not isinstance(payload, dict) or str(payload.get("rCode")) != "0":
                msg = payload.get("rMessage", "") if isinstance(payload, dict) else ""
                self.breaker.failure(f"rCode {payload.get('rCode') if isinstance(payload, dict) else '?'}")
                raise ServiceError(
                    f"coupang {endpoint}: HTTP {resp.status_code}, rCode "
                    f"{payload.get('rCode') if isinstance(payload, dict) else '?'}: {self._redact(str(msg))}"
                )
            return payload.get("data")

        def give_up(last: str) -> Any:
            self.breaker.failure(last)
            raise ServiceError(f"coupang {endpoint}: failed after {self.policy.attempts} attempts: {last}")

        result = with_retries(attempt, self.policy, self.sleep, give_up)
        self.breaker.success()
        return result


def _message(resp: Any) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(data, dict):
        return str(data.get("rMessage") or data.get("message") or "")[:200]
    return ""
