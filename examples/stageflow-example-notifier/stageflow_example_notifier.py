"""A third-party stageflow notifier: appends each message as one JSON line to a file."""

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from stageflow.api import Message, hookimpl

STAGEFLOW_PLUGIN_API = 1


class FileNotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


class FileNotifier:
    def __init__(self, config: FileNotifierConfig):
        self.path = Path(config.path).expanduser()

    def notify(self, message: Message) -> None:
        line = {"title": message.title, "text": message.text, "fields": dict(message.fields)}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


@hookimpl
def register_notifiers(register):
    register("example-file", FileNotifier, config=FileNotifierConfig, description="Append messages to a file")
