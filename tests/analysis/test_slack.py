"""The ``slack`` notifier: real slack-sdk WebClient with base_url on a loopback server speaking
chat.postMessage; idempotent per run; channel_not_found; 429 Retry-After; 5xx; webhook mode."""

from __future__ import annotations

import pytest

from stageflow.errors import BadInput, ServiceAuthError, ServiceError
from stageflow.plugin_manager import load_plugins
from stageflow.stages import Message

from .conftest import SLACK_TOKEN
from .servers import Fault

MSG = Message(title="video analysis: 2 candidates", text="1. 선크림 — score 72", fields={"run": "run-1"})


def build(server, sleeps=None, **cfg):
    from stageflow.plugins.slack import SlackConfig, SlackNotifier

    config = SlackConfig(
        **{
            "token": SLACK_TOKEN,
            "channel": "C123",
            "base_url": server.url + "/api/",
            "retry_backoff_s": 0.01,
            **cfg,
        }
    )
    return SlackNotifier(config, sleep=sleeps if sleeps is not None else (lambda s: None))


def test_posts_blocks_and_text(slack_server):
    build(slack_server).notify(MSG)
    (posted,) = slack_server.posted
    assert posted["channel"] == "C123" and "선크림" in posted["text"]
    assert posted["blocks"][0]["type"] == "header"
    assert slack_server.requests[0].headers["authorization"] == f"Bearer {SLACK_TOKEN}"


def test_idempotent_per_run_even_across_instances(slack_server):
    build(slack_server).notify(MSG)
    build(slack_server).notify(MSG)  # a retried task builds a new notifier
    assert len(slack_server.posted) == 1
    build(slack_server).notify(Message(title=MSG.title, text=MSG.text, fields={"run": "run-2"}))
    assert len(slack_server.posted) == 2


def test_channel_not_found_is_a_clear_error(slack_server):
    n = build(slack_server, channel="C999")
    with pytest.raises(ServiceError, match="channel 'C999' not found.*invite") as info:
        n.notify(MSG)
    assert SLACK_TOKEN not in str(info.value)
    # a failed post is not recorded: fixing the channel and retrying posts it
    build(slack_server).notify(MSG)
    assert len(slack_server.posted) == 1


def test_bad_token(slack_server):
    from stageflow.plugins.slack import SlackConfig, SlackNotifier

    n = SlackNotifier(
        SlackConfig(token="xoxb-wrong-999", channel="C123", base_url=slack_server.url + "/api/")
    )
    with pytest.raises(ServiceAuthError, match="invalid_auth") as info:
        n.notify(MSG)
    assert "xoxb-wrong-999" not in str(info.value)


def test_rate_limited_429_retry_after(slack_server, sleeps):
    slack_server.fail_next(Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "4"}))
    build(slack_server, sleeps).notify(MSG)
    assert sleeps == [4.0] and len(slack_server.posted) == 1


def test_server_errors_retried_bounded(slack_server):
    slack_server.fail_next(Fault(503, "unavailable"))
    build(slack_server).notify(MSG)
    assert len(slack_server.posted) == 1
    slack_server.fail_next(*[Fault(500, "boom") for _ in range(3)])
    with pytest.raises(ServiceError, match="HTTP 500"):
        build(slack_server).notify(Message(title="other"))
    assert len(slack_server.requests) == 2 + 3


def test_webhook_mode(slack_server):
    from stageflow.plugins.slack import SlackConfig, SlackNotifier

    n = SlackNotifier(SlackConfig(webhook_url=slack_server.url + "/hooks/T1/B2/xyz"))
    n.notify(MSG)
    n.notify(MSG)
    assert len(slack_server.webhook_posts) == 1 and "선크림" in slack_server.webhook_posts[0]["text"]


def test_config_errors(monkeypatch):
    from stageflow.plugins.slack import SlackConfig, SlackNotifier

    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(BadInput, match="SLACK_BOT_TOKEN"):
        SlackNotifier(SlackConfig(channel="C1"))
    with pytest.raises(BadInput, match="needs a channel"):
        SlackNotifier(SlackConfig(token="xoxb-1"))


def test_registered_through_the_plugin_manager(slack_server, monkeypatch):
    import stageflow.plugins.analyzers as analyzers
    import stageflow.plugins.commerce as commerce
    import stageflow.plugins.gsheets as gsheets
    import stageflow.plugins.slack as slack

    pm = load_plugins(
        entry_points=[],
        extra_plugins=[
            ("slack", slack),
            ("analyzers", analyzers),
            ("commerce", commerce),
            ("gsheets", gsheets),
        ],
    )
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    n = pm.build("notifiers", "slack", {"channel": "C123", "base_url": slack_server.url + "/api/"})
    n.notify(MSG)
    assert len(slack_server.posted) == 1
    assert pm.registry("analyzers").names() == ["gemini", "rules"]
    assert pm.registry("commerce").names() == ["coupang"]
    assert "gsheets" in pm.registry("sinks").names()
    rules = pm.build("analyzers", "rules", {"merge_gap_s": 2})
    assert rules.find_ranges([]) == []
