"""Built-in notifier ``slack``: slack-sdk's WebClient chat.postMessage (bot token) or an incoming
webhook. Idempotent: a message already posted (same target and content, e.g. a retried task's run
summary) is recorded in the store's notifications table and never posted twice. 429 honours
Retry-After (capped), 5xx is retried a bounded number of times.

The token / webhook URL come from the config (SecretStr), env SLACK_BOT_TOKEN / SLACK_WEBHOOK_URL or
a Prefect Secret block; they never appear in logs or errors. slack_sdk is imported only when built.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, SecretStr

from stageflow.api import BadInput, Message, Register, ServiceAuthError, ServiceError, hookimpl

_EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}
_AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str | None = None  # needed with a bot token
    token: SecretStr | None = None  # default: env SLACK_BOT_TOKEN
    token_block: str | None = None  # Prefect Secret block holding the token
    webhook_url: SecretStr | None = None  # default: env SLACK_WEBHOOK_URL (used when no token)
    base_url: str = "https://slack.com/api/"
    timeout_s: float = 10.0
    retries: int = 2  # for 429 and 5xx
    max_retry_after_s: float = 30.0
    retry_backoff_s: float = 1.0
    dedup: bool = True
    store_path: str | None = None  # default: the stageflow store


def _rate_limit_handler(max_retries: int, cap_s: float, sleep: Callable[[float], None]) -> Any:
    from slack_sdk.http_retry.handler import RetryHandler
    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.response import HttpResponse
    from slack_sdk.http_retry.state import RetryState

    class CappedRateLimitHandler(RetryHandler):
        """Retries HTTP 429 after Retry-After seconds (capped), without the built-in random second."""

        def _can_retry(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> bool:
            return response is not None and response.status_code == 429

        def prepare_for_next_attempt(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> None:
            headers = {k.lower(): v for k, v in (response.headers if response else {}).items()}
            raw = headers.get("retry-after", ["1"])
            try:
                wait = float(raw[0] if isinstance(raw, list) else raw)
            except ValueError:
                wait = 1.0
            sleep(min(max(wait, 0.0), cap_s))
            state.next_attempt_requested = True
            state.increment_current_attempt()

    return CappedRateLimitHandler(max_retry_count=max_retries)


class SlackNotifier:
    def __init__(self, config: SlackConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        self._token = self._resolve_token()
        hook = (
            config.webhook_url.get_secret_value()
            if config.webhook_url
            else os.environ.get("SLACK_WEBHOOK_URL", "")
        )
        self._webhook = "" if self._token else hook
        if not self._token and not self._webhook:
            raise BadInput("slack: no credentials: set SLACK_BOT_TOKEN (with channel) or SLACK_WEBHOOK_URL")
        if self._token and not config.channel:
            raise BadInput('slack: a bot token needs a channel: set channel = "C0123..." or "#name"')
        self.posted = 0

    def _resolve_token(self) -> str:
        if self.config.token is not None and self.config.token.get_secret_value():
            return self.config.token.get_secret_value()
        if self.config.token_block:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(self.config.token_block)  # sync_compatible: typed as a coroutine too
            return str(block.get())
        return os.environ.get("SLACK_BOT_TOKEN", "")

    @property
    def target(self) -> str:
        return (self.config.channel or "") if self._token else "webhook"

    # ------------------------------------------------------------------ public
    def notify(self, message: Message) -> None:
        key = self._key(message)
        store = self._store() if self.config.dedup else None
        try:
            if store is not None and store.notification_ref(key) is not None:
                return
            ref = self._post_api(message) if self._token else self._post_webhook(message)
            self.posted += 1
            if store is not None:
                store.record_notification(key, notifier="slack", target=self.target, ref=ref)
        finally:
            if store is not None:
                store.close()

    # ------------------------------------------------------------------ helpers
    def _key(self, message: Message) -> str:
        body = json.dumps(
            [self.target, message.title, message.text, message.level, message.link, dict(message.fields)],
            ensure_ascii=False,
            sort_keys=True,
        )
        return "slack:" + hashlib.sha256(body.encode()).hexdigest()

    def _store(self) -> Any:
        from stageflow.store import open_store

        return open_store(Path(self.config.store_path).expanduser() if self.config.store_path else None)

    def _retry_handlers(self) -> list[Any]:
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler
        from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

        interval = FixedValueRetryIntervalCalculator(self.config.retry_backoff_s)
        return [
            ConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
            ServerErrorRetryHandler(max_retry_count=self.config.retries, interval_calculator=interval),
            _rate_limit_handler(self.config.retries, self.config.max_retry_after_s, self.sleep),
        ]

    def _post_api(self, message: Message) -> str:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError

        client = WebClient(
            token=self._token,
            base_url=self.config.base_url,
            timeout=int(max(1, self.config.timeout_s)),
            retry_handlers=self._retry_handlers(),
        )
        try:
            resp = client.chat_postMessage(
                channel=cast(str, self.config.channel), text=fallback_text(message), blocks=blocks(message)
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else "?"
            if error == "channel_not_found":
                raise ServiceError(
                    f"slack: channel '{self.config.channel}' not found: check the channel id, and invite "
                    "the bot to it (/invite @your-bot)"
                ) from None
            if error == "not_in_channel":
                raise ServiceError(
                    f"slack: the bot is not in '{self.config.channel}': /invite it there"
                ) from None
            if error in _AUTH_ERRORS:
                raise ServiceAuthError(
                    f"slack: {error}: the bot token is wrong or revoked; fix SLACK_BOT_TOKEN"
                ) from None
            raise ServiceError(f"slack chat.postMessage failed: HTTP {status} {error or 'error'}") from None
        except Exception as exc:  # connection errors after retries
            raise ServiceError(f"slack chat.postMessage failed: {type(exc).__name__}") from None
        return str(resp.get("ts", ""))

    def _post_webhook(self, message: Message) -> str:
        from slack_sdk.webhook import WebhookClient

        client = WebhookClient(
            self._webhook, timeout=int(max(1, self.config.timeout_s)), retry_handlers=self._retry_handlers()
        )
        try:
            resp = client.send(text=fallback_text(message), blocks=blocks(message))
        except Exception as exc:
            raise ServiceError(f"slack webhook failed: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise ServiceError(f"slack webhook failed: HTTP {resp.status_code} {resp.body[:100]}")
        return "ok"


def fallback_text(message: Message) -> str:
    parts = [f"{message.title}", message.text]
    parts += [f"{k}: {v}" for k, v in message.fields.items()]
    return "\n".join(p for p in parts if p)[:3000]


def blocks(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
    ]
    if message.text:
        out.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{_EMOJI.get(message.level, '')} {message.text}"[:3000]},
            }
        )
    items = list(message.fields.items())
    for i in range(0, min(len(items), 40), 10):
        out.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in items[i : i + 10]],
            }
        )
    if message.link:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{message.link}|open>"}]})
    return out


@hookimpl
def register_notifiers(register: Register) -> None:
    register(
        "slack",
        SlackNotifier,
        config=SlackConfig,
        requires=("slack_sdk",),
        extra="slack",
        description="Slack chat.postMessage or incoming webhook; idempotent per message",
    )
