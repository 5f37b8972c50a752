"""Built-in commerce backend ``coupang``: the Coupang Partners Open API (search + deeplink, signed,
cached, rate-limited, with a circuit breaker and budget guard; its budget alerts go through the
notifier the run hands its ``preflight``). The client lives in stageflow.commerce.coupang; this module
only registers it."""

from __future__ import annotations

from stageflow.api import CommerceApi, Register, hookimpl
from stageflow.commerce.coupang import CoupangConfig


def _coupang(config: CoupangConfig) -> CommerceApi:
    from stageflow.commerce.coupang import CoupangClient

    return CoupangClient(config)


@hookimpl
def register_commerce(register: Register) -> None:
    register(
        "coupang",
        _coupang,
        config=CoupangConfig,
        requires=("httpx",),
        description="Coupang Partners search + deeplink (COUPANG_ACCESS_KEY / COUPANG_SECRET_KEY)",
    )
