"""The project file ``stageflow.toml``: found, parsed and validated, with errors that name the file,
the line and the key.

Sections owned by flows that have not landed yet are accepted as tables and validated by their
flow when it lands; every key this module knows is checked strictly (unknown keys are errors).
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from stageflow.backend_refs import BackendRef, BackendUse, model_refs
from stageflow.errors import ConfigError

if typing.TYPE_CHECKING:
    from stageflow.build.config import BuildConfig
    from stageflow.monitor.engine import MonitorConfig
    from stageflow.sync.profile import SyncConfig
    from stageflow.video.settings import VideoConfig

CONFIG_NAME = "stageflow.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendChoice(_Strict):
    """A backend chosen by name, with its options (validated by the backend's own config model).
    Which kind it names is said where it is used (``sinks: list[SinkChoice]``)."""

    backend: str
    options: dict[str, Any] = Field(default_factory=dict)


class SinkChoice(BackendChoice):
    """A sink chosen by name, with its options."""

    backend: Annotated[str, BackendRef("sinks")]


class NotifyConfig(_Strict):
    backend: Annotated[str, BackendRef("notifiers")] = "log"
    options: dict[str, Any] = Field(default_factory=dict)


class StoreConfig(_Strict):
    path: str | None = None  # default: $STAGEFLOW_HOME/stageflow.db


class DiscoverConfig(_Strict):
    """The source the discovery flow reads, and the sinks it writes to."""

    source: Annotated[str, BackendRef("sources")] = "rss"
    options: dict[str, Any] = Field(default_factory=dict)
    sinks: list[SinkChoice] = Field(default_factory=list)
    notify_when_empty: bool = False  # also post the summary when nothing new was found


#: Each family's section: its model, imported only when the file has the section or a caller reads
#: it, so a command of one family does not import (and build pydantic models for) the others.
SECTIONS: dict[str, tuple[str, str]] = {
    "sync": ("stageflow.sync.profile", "SyncConfig"),
    "build": ("stageflow.build.config", "BuildConfig"),
    "video": ("stageflow.video.settings", "VideoConfig"),
    "monitor": ("stageflow.monitor.engine", "MonitorConfig"),
}


def section_model(name: str) -> type[BaseModel]:
    import importlib

    module, attr = SECTIONS[name]
    return getattr(importlib.import_module(module), attr)


class ProjectConfig(_Strict):
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    discover: DiscoverConfig = Field(default_factory=DiscoverConfig)
    # The family sections (sync, build, video, monitor) are validated by load_config against their
    # own models and kept here; a section the file does not have is its model's defaults.

    _source_path: Path | None = PrivateAttr(default=None)
    _sections: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    _given: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def source_path(self) -> Path | None:
        """The file this config was read from (None: defaults)."""
        return self._source_path

    def given(self, name: str) -> bool:
        """Whether the file sets ``name`` (a top-level key or a family section)."""
        return name in self._given or name in self.model_fields_set

    def section(self, name: str) -> Any:
        if name not in self._sections:
            self._sections[name] = section_model(name)()
        return self._sections[name]

    @property
    def sync(self) -> SyncConfig:
        return self.section("sync")

    @property
    def build(self) -> BuildConfig:
        return self.section("build")

    @property
    def video(self) -> VideoConfig:
        return self.section("video")

    @property
    def monitor(self) -> MonitorConfig:
        return self.section("monitor")


#: Sections whose defaults are not checked by ``backend_refs``: they only run when the file has them
#: (the default discover source has no feeds; the default video backends need models).
CHECKED_ONLY_IF_GIVEN = frozenset({"discover", "video"})


def backend_refs(cfg: ProjectConfig) -> Iterator[BackendUse]:
    """Every backend a project config names, with where (the walk over the section models'
    BackendRef fields: what ``stageflow validate`` checks)."""
    for name in [*type(cfg).model_fields, *SECTIONS]:
        if name in CHECKED_ONLY_IF_GIVEN and not cfg.given(name):
            continue
        model = cfg.section(name) if name in SECTIONS else getattr(cfg, name)
        yield from model_refs(model, (name,))


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
    sections: dict[str, BaseModel] = {}
    try:
        if not isinstance(data, dict):  # pragma: no cover - tomllib always gives a table
            data = {}
        core = {k: v for k, v in data.items() if k not in SECTIONS}
        root: Any = ProjectConfig
        prefix: tuple[Any, ...] = ()
        cfg = ProjectConfig.model_validate(core)
        for name in SECTIONS:
            if name in data:
                root, prefix = section_model(name), (name,)
                sections[name] = root.model_validate(data[name])
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = prefix + tuple(first["loc"])
        key = ".".join(str(p) for p in loc)
        line = _line_of(text, loc)
        where = f":{line}" if line else ""
        if first["type"] == "extra_forbidden":
            parent = loc[len(prefix) : -1]
            model: Any = root
            for part in parent:
                if isinstance(part, int):
                    continue
                field = getattr(model, "model_fields", {}).get(str(part))
                model = field.annotation if field is not None else None
                if model is not None and getattr(model, "model_fields", None) is None:
                    args = [a for a in typing.get_args(model) if hasattr(a, "model_fields")]
                    model = args[0] if args else None
            known = ", ".join(
                [*getattr(model, "model_fields", {}), *(SECTIONS if model is ProjectConfig else ())]
            )
            raise ConfigError(
                f"{path}{where}: unknown key '{key}'" + (f" (known here: {known})" if known else "")
            ) from None
        raise ConfigError(f"{path}{where}: key '{key}': {first['msg']}") from None
    cfg._source_path = path
    cfg._sections.update(sections)
    cfg._given = frozenset(sections)
    return cfg
