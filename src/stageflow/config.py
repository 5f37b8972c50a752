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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from stageflow.errors import ConfigError

if typing.TYPE_CHECKING:
    from stageflow.build.config import BuildConfig
    from stageflow.monitor.engine import MonitorConfig
    from stageflow.sync.profile import SyncConfig
    from stageflow.video.settings import VideoConfig

CONFIG_NAME = "stageflow.toml"


# --------------------------------------------------------------------------- backend references


@dataclass(frozen=True)
class BackendRef:
    """Marks a config field that names a backend of ``kind``: the one declaration that ``stageflow
    validate``, the engines' pre-flight checks and the tests read (through :func:`model_refs`).

    Use it in ``typing.Annotated`` (type checkers accept that form; the value is a backend name, ""
    or None switching the stage off)::

        commerce: Annotated[str, BackendRef("commerce")] = ""
        sinks_used: list[Annotated[str, BackendRef("sinks")]]

    ``options`` names the attribute of the same model that holds the backend's options: a mapping,
    or a method called with the backend name (``VideoConfig.options``, the ``[video.<name>]`` table).
    """

    kind: str
    options: str = "options"


@dataclass(frozen=True)
class BackendUse:
    """One backend a config names: its kind and name, its options, and where the file says so."""

    kind: str
    name: str
    options: dict[str, Any]
    where: str


def field_ref(field: Any) -> tuple[BackendRef, bool] | None:
    """The BackendRef of a pydantic field (pydantic moves a top-level Annotated's metadata to
    ``field.metadata``), and whether the field holds a list of names."""
    for meta in field.metadata:
        if isinstance(meta, BackendRef):
            return meta, False
    return ref_of(field.annotation)


def ref_of(annotation: Any) -> tuple[BackendRef, bool] | None:
    """The BackendRef of a field annotation, and whether the field is a list of names."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, BackendRef):
            return meta, False
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        found = ref_of(arg)
        if found is not None:
            return found[0], found[1] or origin is list
    return None


def _submodels(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _submodels(arg)


def model_refs(model: BaseModel, tables: tuple[str, ...] = (), trail: str = "") -> Iterator[BackendUse]:
    """Every backend ``model`` (and the models inside it) names, in field order. ``tables`` is the
    TOML table path of ``model`` (for the ``where`` label)."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = f"{trail}{name}"
        found = field_ref(field)
        if found is not None:
            ref, many = found
            names = list(value or ()) if many else [value]
            for backend in names:
                if not backend:  # "" or None: the stage is off (or the default is decided at run time)
                    continue
                opts = getattr(model, ref.options, None)
                opts = opts(backend) if callable(opts) else opts
                table = f"[{'.'.join(tables)}]" if tables else "[]"
                yield BackendUse(ref.kind, backend, dict(opts or {}), f"{table} {here}")
            continue
        yield from _nested(value, tables, here)


def _nested(value: Any, tables: tuple[str, ...], here: str) -> Iterator[BackendUse]:
    if isinstance(value, BaseModel):
        # a sub-table: [a.b]; a model inside a list keeps the list's label (``hooks[0]``)
        if "[" in here:
            for use in model_refs(value, tables, here + "."):
                yield _item_label(use, here)
        else:
            yield from model_refs(value, (*tables, here.rpartition(".")[2]))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel):
                yield from model_refs(item, (*tables, here.rpartition(".")[2], str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, BaseModel):
                label = getattr(item, "name", None) if "name" in type(item).model_fields else None
                if isinstance(label, str) and label:  # [[monitor.checks]] api
                    for use in model_refs(item, tables, f"{here}[{i}]."):
                        head = f"[[{'.'.join((*tables, here))}]] {label}"
                        yield BackendUse(use.kind, use.name, use.options, head)
                else:
                    yield from _nested(item, tables, f"{here}[{i}]")


def _item_label(use: BackendUse, item: str) -> BackendUse:
    """A backend named inside a list item is reported at the item (``[discover] sinks[0]``)."""
    table = use.where.partition(" ")[0]
    return BackendUse(use.kind, use.name, use.options, f"{table} {item}")


def backend_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, BackendRef]]:
    """Every field of ``model`` (and of the models it contains) declared as a BackendRef, as
    ``(dotted path, ref)``: the static view of what :func:`model_refs` walks."""
    for name, field in model.model_fields.items():
        found = field_ref(field)
        if found is not None:
            yield f"{prefix}{name}", found[0]
            continue
        for sub in _submodels(field.annotation):
            yield from backend_fields(sub, f"{prefix}{name}.")


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
