"""The Coupang Partners client against a loopback server that verifies CEA signatures: search,
deeplink, cache, keyword variants, 401, 429 + Retry-After, 5xx bursts, slow responses, malformed
JSON, token bucket, circuit breaker and budget guard."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from stageflow.commerce.coupang import CoupangClient, CoupangConfig
from stageflow.commerce.matching import find_match, keyword_variants
from stageflow.commerce.signing import authorization, signature, signed_date
from stageflow.errors import (
    BadInput,
    BudgetExhausted,
    CircuitOpen,
    RateLimited,
    ServiceAuthError,
    ServiceError,
    StageflowError,
)
from stageflow.services.budget import BudgetGuard
from stageflow.services.resilience import CircuitBreaker, TokenBucket
from stageflow.video.analysis.evidence import NEEDS_CHECK

from .conftest import ACCESS_KEY, SECRET_KEY
from .servers import Fault


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def client(server, sleeps, store=None, secret: str = SECRET_KEY, **over: Any) -> CoupangClient:
    cfg: dict[str, Any] = {
        "access_key": SecretStr(ACCESS_KEY),
        "secret_key": SecretStr(secret),
        "base_url": server.url,
        "timeout_s": 2.0,
        "backoff_s": 0.01,
        "search_per_hour": 100,
        "use_store": False,
    }
    cfg.update(over)
    return CoupangClient(CoupangConfig(**cfg), store=store, sleep=sleeps)


def test_signature_matches_the_documented_recipe():
    when = datetime(2025, 11, 22, 3, 15, 0, tzinfo=UTC)
    assert signed_date(when) == "251122T031500Z"
    expected = hmac.new(
        b"s3cr3t", b"251122T031500ZGET/v2/x/searchkeyword=a&limit=5", hashlib.sha256
    ).hexdigest()
    assert signature("s3cr3t", "251122T031500Z", "get", "/v2/x/search", "?keyword=a&limit=5") == expected
    header = authorization("AK", "s3cr3t", "GET", "/v2/x/search", "keyword=a&limit=5", now=when)
    assert (
        header == f"CEA algorithm=HmacSHA256, access-key=AK, signed-date=251122T031500Z, signature={expected}"
    )


def test_search_and_deeplink_signed(coupang_server, sleeps):
    c = client(coupang_server, sleeps)
    products = c.search("라운드랩 선크림", 5)
    assert [p.product_id for p in products] == ["1", "3"]
    assert products[0].price == 19900 and products[0].is_rocket
    links = c.deeplink([products[0].url])
    assert links[0].startswith("https://link.coupang.com/a/")
    assert coupang_server.auth_failures == 0
    assert (
        "keyword=%EB%9D%BC" in coupang_server.calls("search")[0].query
    )  # URL-encoded Korean, signed as sent


def test_search_cached_for_an_hour(coupang_server, sleeps, store):
    clock = [0.0]
    c = client(coupang_server, sleeps, store=store, use_store=True)
    c.cache.clock = lambda: clock[0]
    c.search("선크림", 10)
    c.search("선크림", 10)
    assert len(coupang_server.calls("search")) == 1 and c.cache_hits == 1
    clock[0] = 3601.0
    c.search("선크림", 10)
    assert len(coupang_server.calls("search")) == 2
    # the cache lives in the store: a new client (a new run) reuses it
    c2 = client(coupang_server, sleeps, store=store, use_store=True)
    c2.cache.clock = lambda: clock[0]
    c2.search("선크림", 10)
    assert len(coupang_server.calls("search")) == 2
    assert store.count_api_calls("coupang") == 2


def test_bad_keys_401_clear_error_breaker_opens_no_endless_retries(coupang_server, sleeps):
    c = client(coupang_server, sleeps, secret="wrong-secret-abcdef")
    for _ in range(3):
        with pytest.raises(ServiceAuthError) as info:
            c.search("선크림", 5)
        text = str(info.value)
        assert "HTTP 401" in text and "COUPANG_SECRET_KEY" in text and "Invalid signature" in text
        assert "wrong-secret-abcdef" not in text and SECRET_KEY not in text
    assert len(coupang_server.requests) == 3  # one request per call: 401 is never retried
    with pytest.raises(CircuitOpen, match="circuit open after 3 failures"):
        c.search("선크림", 5)
    assert len(coupang_server.requests) == 3  # refused without calling
    assert sleeps == []


def test_breaker_half_opens_after_cooldown():
    clock = FakeClock()
    b = CircuitBreaker("svc", threshold=3, cooldown_s=300, clock=clock)
    for _ in range(3):
        b.failure("boom")
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.t += 300
    b.before_call()  # half-open: one trial allowed
    b.failure("again")
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.t += 300
    b.success()
    b.before_call()


def test_429_retry_after_honoured(coupang_server, sleeps):
    coupang_server.fail_next(Fault(429, {"rCode": "429", "rMessage": "too many"}, {"Retry-After": "7"}))
    c = client(coupang_server, sleeps)
    assert c.search("마우스", 5)[0].product_id == "2"
    assert sleeps == [7.0]
    assert len(coupang_server.requests) == 2


def test_burst_of_5xx_then_success(coupang_server, sleeps):
    coupang_server.fail_next(Fault(502, "bad gateway"), Fault(503, {"rCode": "503"}))
    c = client(coupang_server, sleeps, attempts=3)
    assert c.search("마우스", 5)
    assert len(sleeps) == 2 and c.breaker.failures == 0


def test_persistent_5xx_gives_up_bounded(coupang_server, sleeps):
    coupang_server.fail_next(*[Fault(500, "oops") for _ in range(3)])
    c = client(coupang_server, sleeps, attempts=3)
    with pytest.raises(ServiceError, match="failed after 3 attempts: HTTP 500"):
        c.search("마우스", 5)
    assert len(coupang_server.requests) == 3 and c.breaker.failures == 1


def test_slow_response_times_out_and_is_retried(coupang_server, sleeps):
    # The slow answer comes long after the timeout, which is generous for the answer that follows.
    coupang_server.fail_next(Fault(200, {"rCode": "0", "data": {}}, delay_s=60))
    c = client(coupang_server, sleeps, timeout_s=5)
    assert c.search("마우스", 5)[0].product_id == "2"
    assert len(sleeps) == 1


def test_malformed_json_is_retried_then_fails(coupang_server, sleeps):
    coupang_server.fail_next(Fault(200, "{not json"), Fault(200, "<html>"))
    c = client(coupang_server, sleeps, attempts=2)
    with pytest.raises(ServiceError, match="not JSON"):
        c.search("마우스", 5)


def test_rcode_error_surfaced(coupang_server, sleeps):
    coupang_server.fail_next(Fault(200, {"rCode": "400", "rMessage": "keyword too long"}))
    with pytest.raises(ServiceError, match="rCode 400: keyword too long"):
        client(coupang_server, sleeps).search("마우스", 5)


def test_token_bucket_per_endpoint(coupang_server, sleeps):
    c = client(coupang_server, sleeps, search_per_hour=2, deeplink_per_minute=100)
    c.search("a", 1)
    c.search("b", 1)
    with pytest.raises(RateLimited, match="2 calls per 3600 s"):
        c.search("c", 1)
    assert c.deeplink(["https://www.coupang.com/vp/products/1"])  # deeplink has its own bucket
    assert len(coupang_server.calls("search")) == 2


def test_token_bucket_refills_and_can_wait():
    clock, waits = FakeClock(), []
    bucket = TokenBucket("t", capacity=10, per_s=3600, max_wait_s=400, clock=clock, sleep=waits.append)
    for _ in range(10):
        bucket.acquire()
    bucket.acquire()  # waits one token's time (360 s) instead of refusing
    assert waits == [pytest.approx(360.0)]
    strict = TokenBucket("s", capacity=1, per_s=60, clock=clock)
    strict.acquire()
    with pytest.raises(RateLimited):
        strict.acquire()
    clock.t += 60
    strict.acquire()


def test_budget_exhausted_blocks_and_alerts(coupang_server, sleeps, store):
    alerts: list[tuple[int, int, int]] = []
    c = client(coupang_server, sleeps, store=store, use_store=True, monthly_budget=20)
    c.budget.alert = lambda pct, used, limit: alerts.append((pct, used, limit))
    for i in range(19):
        c.search(f"kw{i}", 1)
    with pytest.raises(BudgetExhausted, match="19/20 calls used") as info:
        c.search("one more", 1)
    assert info.value.exit_code == 3
    assert [a[0] for a in alerts] == [70, 80, 90, 95]
    assert len(coupang_server.requests) == 19


def test_budget_alerts_go_through_the_notifier_the_preflight_context_hands_in(coupang_server, sleeps, store):
    """The run's notifier reaches the client through ``preflight(CommerceContext)``: once per
    threshold, through ``context.notify``; a failing notifier never fails the search."""
    from stageflow.contracts.commerce import CommerceContext
    from stageflow.contracts.ops import Message

    sent: list[Message] = []
    c = client(coupang_server, sleeps, store=store, use_store=True, monthly_budget=20)
    c.preflight(CommerceContext(notify=sent.append))
    for i in range(14):
        c.search(f"kw{i}", 1)
    assert sent == []
    c.search("kw14", 1)  # the 15th call: 70 % used at the next check
    c.search("kw15", 1)
    assert [m.title for m in sent] == ["coupang: 70% of the monthly API budget used"]
    assert sent[0].level == "warning" and sent[0].fields["used"] == "14"

    def broken(message: Message) -> None:
        raise ServiceError("slack: 500")

    quiet = client(coupang_server, sleeps, store=store, use_store=True, monthly_budget=20)
    quiet.preflight(CommerceContext(notify=broken))
    quiet.search("kw16", 1)  # 80 % crossed: the alert fails, the search does not
    assert len(sent) == 1
    silent = client(coupang_server, sleeps, store=store, use_store=True, monthly_budget=20, alerts=False)
    silent.preflight(CommerceContext(notify=sent.append))
    silent.search("kw17", 1)
    assert len(sent) == 1  # alerts = false: the context's notifier is not used


def test_budget_guard_in_memory():
    guard = BudgetGuard("svc", 100)
    for _ in range(94):
        guard.record("x", 200, True)
    guard.check()
    guard.record("x", 200, True)
    with pytest.raises(BudgetExhausted):
        guard.check()


def test_a_given_store_stays_the_callers(coupang_server, sleeps, store):
    """close() closes only a store the client opened itself; one passed in is the caller's."""
    c = client(coupang_server, sleeps, store=store, use_store=True)
    assert c.search("마우스", 1)
    c.close()
    assert store.count_api_calls("coupang") == 1  # still open


def test_the_client_opens_its_store_on_first_use(coupang_server, sleeps):
    from stageflow import settings

    c = client(coupang_server, sleeps, use_store=True)
    assert c.store is None and not settings.store_path().exists()
    assert c.search("마우스", 1) and c.store is not None
    assert c.store.count_api_calls("coupang") == 1
    c.close()
    assert c.store is None


def test_missing_keys_clear_error(monkeypatch):
    monkeypatch.delenv("COUPANG_ACCESS_KEY", raising=False)
    with pytest.raises(BadInput, match="COUPANG_ACCESS_KEY"):
        CoupangClient(CoupangConfig(use_store=False))


def test_keys_from_env(coupang_server, sleeps, monkeypatch):
    monkeypatch.setenv("COUPANG_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("COUPANG_SECRET_KEY", SECRET_KEY)
    c = CoupangClient(CoupangConfig(base_url=coupang_server.url, use_store=False), sleep=sleeps)
    assert c.search("마우스", 1)
    assert SECRET_KEY not in repr(c.config)


def test_keyword_variants():
    v = keyword_variants("자작나무 수분 선크림 (50ml) 1+1", "라운드랩", ("뷰티", "선케어"))
    assert v[0] == "라운드랩 자작나무 수분 선크림 (50ml) 1+1"
    assert "라운드랩 선케어" in v and len(v) <= 5 and len(set(v)) == len(v)
    assert keyword_variants(NEEDS_CHECK, "라운드랩") == []
    assert keyword_variants(None, None) == []


def test_find_match_accepts_stops_and_rejects(coupang_server, sleeps):
    c = client(coupang_server, sleeps)
    m = find_match(c, "자작나무 선크림", "라운드랩", ("뷰티",))
    assert m is not None and m.product_id == "1" and m.similarity >= 0.8
    assert len(coupang_server.calls("search")) == 1  # stopped at >= 0.8 after the first variant
    assert find_match(c, "전혀 없는 물건", None) is None
    assert find_match(c, NEEDS_CHECK, "라운드랩") is None


def test_errors_are_stageflow_errors():
    assert issubclass(ServiceAuthError, StageflowError) and issubclass(CircuitOpen, StageflowError)
