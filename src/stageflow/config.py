"""The project file ``stageflow.toml``: found, parsed and validated, with errors that name the file,
the line and the key.

Sections owned by flows that have not landed yet are accepted as tables and validated by their
flow when it lands; every key this module knows is checked strictly (unknown keys are errors).
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from stageflow.build.config import BuildConfig
from stageflow.errors import ConfigError
from stageflow.monitor.engine import MonitorConfig
from stageflow.sync.profile import SyncConfig
from stageflow.video.settings import VideoConfig

CONFIG_NAME = "stageflow.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendChoice(_Strict):
    """A backend chosen by name, with its options (validated by the backend's own config model)."""

    backend: str
    options: dict[str, Any] = Field(default_factory=dict)


class NotifyConfig(_Strict):
    backend: str = "log"
    options: dict[str, Any] = Field(default_factory=dict)


class StoreConfig(_Strict):
    path: str | None = None  # default: $STAGEFLOW_HOME/stageflow.db


class DiscoverConfig(_Strict):
    """The source the discovery flow reads, and the sinks it writes to."""

    source: str = "rss"
    options: dict[str, Any] = Field(default_factory=dict)
    sinks: list[BackendChoice] = Field(default_factory=list)


class ProjectConfig(_Strict):
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    discover: DiscoverConfig = Field(default_factory=DiscoverConfig)
    # Sections validated by their own flows (deploy-sync, selective build, video analysis, ops).
    sync: SyncConfig = Field(default_factory=SyncConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    _source_path: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        """The file this config was read from (None: defaults)."""
        return self._source_path


def find_config(start: Path | None = None) -> Path | None:
    """``$STAGEFLOW_CONFIG`` if set (workers and deployments run elsewhere than the project), else
    ``stageflow.toml`` in ``start`` (default: the working directory), else None."""
    import os

    env = os.environ.get("STAGEFLOW_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"STAGEFLOW_CONFIG={env}: file not found: point it at a stageflow.toml")
        return path
    candidate = (start or Path.cwd()) / CONFIG_NAME
    return candidate if candidate.is_file() else None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a dotted key path in TOML text."""
    keys = [str(p) for p in loc if not isinstance(p, int)]
    if not keys:
        return None
    table: list[str] = []
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            table = [part.strip().strip("\"'") for part in m.group(1).split(".")]
            if table == keys:
                return number
            continue
        m = assign.match(line)
        if m:
            full = table + [part.strip().strip("\"'") for part in m.group(1).split(".")]
            if full == keys or (full[: len(keys)] == keys and len(full) > len(keys)):
                return number
    return None


def load_config(path: Path | None = None) -> ProjectConfig:
    """Load and validate ``path`` (or the working directory's stageflow.toml, if any)."""
    if path is None:
        path = find_config()
        if path is None:
            return ProjectConfig()
    elif not path.is_file():
        raise ConfigError(f"{path}: config file not found: pass an existing file to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f":{m.group(1)}" if m else ""
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{path}{where}: invalid TOML: {msg}") from None
    try:
        cfg = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(p) for p in loc)
        line = _line_of(text, loc)
        where = f":{line}" if line else ""
        if first["type"] == "extra_forbidden":
            parent = loc[:-1]
            model: Any = ProjectConfig
            for part in parent:
                if isinstance(part, int):
                    continue
                field = getattr(model, "model_fields", {}).get(str(part))
                model = field.annotation if field is not None else None
                if model is not None and getattr(model, "model_fields", None) is None:
                    args = [a for a in typing.get_args(model) if hasattr(a, "model_fields")]
                    model = args[0] if args else None
            known = ", ".join(getattr(model, "model_fields", {}))
            raise ConfigError(
                f"{path}{where}: unknown key '{key}'" + (f" (known here: {known})" if known else "")
            ) from None
        raise ConfigError(f"{path}{where}: key '{key}': {first['msg']}") from None
    cfg._source_path = path
    return cfg
