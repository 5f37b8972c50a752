"""Built-in commerce backend ``coupang``: the Coupang Partners Open API (search + deeplink, signed,
cached, rate-limited, with a circuit breaker and budget guard). The client lives in
stageflow.commerce.coupang; this module only registers it."""

from __future__ import annotations

from collections.abc import Callable

from stageflow.api import CommerceApi, Message, Register, StageflowError, hookimpl
from stageflow.commerce.coupang import CoupangConfig


def budget_alert(service: str) -> Callable[[int, int, int], None]:
    """An alert callback that posts through the notifier of stageflow.toml's [notify] (read when the
    alert fires, so building the client needs no config file); a notifier failure is logged, never
    raised into the analysis."""

    def alert(threshold: int, used: int, limit: int) -> None:
        import logging

        from stageflow.config import load_config
        from stageflow.plugin_manager import get_plugin_manager

        try:
            notify = load_config().notify
            message = Message(
                title=f"{service}: {threshold}% of the monthly API budget used",
                text=f"{used} of {limit} calls this month. New calls are blocked at 95 %; raise "
                f"monthly_budget in [video.{service}] if the quota allows.",
                level="warning" if threshold < 95 else "error",
                fields={
                    "service": service,
                    "threshold": f"{threshold}%",
                    "used": str(used),
                    "limit": str(limit),
                },
            )
            get_plugin_manager().build("notifiers", notify.backend, notify.options).notify(message)
        except StageflowError as exc:
            logging.getLogger("stageflow.commerce").warning("%s budget alert not delivered: %s", service, exc)
            raise

    return alert


def _coupang(config: CoupangConfig) -> CommerceApi:
    from stageflow.commerce.coupang import CoupangClient

    return CoupangClient(config, alert=budget_alert("coupang") if config.alerts else None)


@hookimpl
def register_commerce(register: Register) -> None:
    register(
        "coupang",
        _coupang,
        config=CoupangConfig,
        requires=("httpx",),
        description="Coupang Partners search + deeplink (COUPANG_ACCESS_KEY / COUPANG_SECRET_KEY)",
    )
