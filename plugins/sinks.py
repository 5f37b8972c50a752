"""Built-in sinks: ``sqlite`` (the stageflow store, upserting by key) and ``jsonl`` (one file per table)."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from stageflow.api import Register, hookimpl


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
    key: str = "id"


class JsonlSink:
    """``<directory>/<table>.jsonl``, one record per line, upserted by ``key``: a re-run replaces a
    record's line instead of adding one (records without the key are appended). The file is rewritten
    through a temp file and an atomic rename, so a crash never leaves half a file."""

    def __init__(self, config: JsonlSinkConfig):
        self.directory = Path(config.directory).expanduser()
        self.key = config.key

    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int:
        if not records:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{table}.jsonl"
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self._rewrite(path, records)
        finally:
            os.close(lock_fd)  # releases the lock
        return len(records)

    def _rewrite(self, path: Path, records: Sequence[Mapping[str, Any]]) -> None:
        lines: dict[Any, str] = {}
        loose: list[str] = []
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        ident = json.loads(line).get(self.key)
                    except (ValueError, AttributeError):
                        ident = None
                    if ident is None:
                        loose.append(line)
                    else:
                        lines[ident] = line
        for record in records:
            line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
            ident = record.get(self.key)
            if ident is None:
                loose.append(line)
            else:
                lines[ident] = line
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.writelines(lines.values())
                fh.writelines(loose)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@hookimpl
def register_sinks(register: Register) -> None:
    register("sqlite", SqliteSink, config=SqliteSinkConfig, description="Upsert into the stageflow store")
    register(
        "jsonl",
        JsonlSink,
        config=JsonlSinkConfig,
        description="JSON lines, one file per table, upserted by key",
    )
