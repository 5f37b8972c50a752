"""Built-in notifiers: ``log`` (the stageflow logger; Prefect shows it in the run's logs)."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict

from stageflow.api import Message, Register, hookimpl

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LogNotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    logger: str = "stageflow.notify"


class LogNotifier:
    def __init__(self, config: LogNotifierConfig):
        self.logger = logging.getLogger(config.logger)
        # A notification is output the user asked for: do not let the root's WARNING level drop it.
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)

    def notify(self, message: Message) -> None:
        parts = [message.title]
        if message.text:
            parts.append(message.text)
        parts.extend(f"{k}={v}" for k, v in message.fields.items())
        if message.link:
            parts.append(message.link)
        self.logger.log(_LEVELS.get(message.level, logging.INFO), " | ".join(parts))


@hookimpl
def register_notifiers(register: Register) -> None:
    register("log", LogNotifier, config=LogNotifierConfig, description="Log messages (no service needed)")
