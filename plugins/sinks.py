"""Built-in sinks: ``sqlite`` (the stageflow store, upserting by key) and ``jsonl`` (one file per table)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from stageflow.hookspecs import hookimpl


class SqliteSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None  # default: the stageflow store in $STAGEFLOW_HOME
    key: str = "id"


class SqliteSink:
    """Upserts records into the store's ``records`` table: a re-run never duplicates rows."""

    def __init__(self, config: SqliteSinkConfig):
        self.config = config

    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int:
        from stageflow.store import open_store

        store = open_store(Path(self.config.path).expanduser() if self.config.path else None)
        try:
            return store.upsert_records(table, records, key=self.config.key)
        finally:
            store.close()


class JsonlSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    directory: str


class JsonlSink:
    """Appends records to ``<directory>/<table>.jsonl``; each call writes whole lines in one flush."""

    def __init__(self, config: JsonlSinkConfig):
        self.directory = Path(config.directory).expanduser()

    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int:
        if not records:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in records)
        with open(self.directory / f"{table}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        return len(records)


@hookimpl
def register_sinks(register):
    register("sqlite", SqliteSink, config=SqliteSinkConfig, description="Upsert into the stageflow store")
    register("jsonl", JsonlSink, config=JsonlSinkConfig, description="Append JSON lines, one file per table")
