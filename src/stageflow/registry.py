"""Backend registries: one per stage kind, resolving a backend by name and building it from a
validated config object.

A registry never imports a backend's optional dependencies to list it: availability is checked with
``importlib.util.find_spec`` so ``stageflow plugins`` stays fast and works without the extras.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from stageflow.errors import (
    ConfigError,
    DuplicateBackendError,
    MissingDependencyError,
    PluginError,
    UnknownBackendError,
)


class NoConfig(BaseModel):
    """Config model of a backend that takes no options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: what builds it, what it needs, and who provided it."""

    kind: str
    name: str
    factory: Callable[[Any], Any]
    config: type[BaseModel] = NoConfig
    requires: tuple[str, ...] = ()
    extra: str | None = None
    description: str = ""
    distribution: str = "?"
    version: str = "?"
    plugin: str = "?"

    def missing(self) -> list[str]:
        """Modules in ``requires`` that cannot be imported here (checked without importing them)."""
        out = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(module)
        return out

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}"


B = TypeVar("B")


@dataclass
class Registry(Generic[B]):
    """Backends of one stage kind, keyed by name. ``Registry[Sink]``: :meth:`build` returns a Sink
    (checked at run time against ``protocol``)."""

    kind: str
    protocol: type
    _specs: dict[str, BackendSpec] = field(default_factory=dict)

    def add(self, spec: BackendSpec) -> None:
        if not spec.name or not isinstance(spec.name, str):
            raise PluginError(f"{spec.provider}: a {self.kind} backend needs a non-empty string name")
        existing = self._specs.get(spec.name)
        if existing is not None:
            raise DuplicateBackendError(
                f"{self.kind} backend '{spec.name}' is registered by both {existing.provider} and "
                f"{spec.provider}: uninstall one, or choose with STAGEFLOW_LOAD_PLUGINS"
            )
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[BackendSpec]:
        return [self._specs[n] for n in self.names()]

    def get(self, name: str) -> BackendSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self.names()) or "none installed"
            raise UnknownBackendError(
                f"unknown {self.kind} backend '{name}' (known: {known}); "
                f"`stageflow plugins` lists what is installed"
            ) from None

    def validate_config(self, name: str, config: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        spec = self.get(name)
        if isinstance(config, spec.config):
            return config
        data = dict(config or {}) if not isinstance(config, BaseModel) else config.model_dump()
        try:
            return spec.config.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "(config)"
            raise ConfigError(
                f"{self.kind} backend '{name}': option '{key}': {first['msg']}"
                f" (options: {', '.join(spec.config.model_fields) or 'none'})"
            ) from None

    def build(self, name: str, config: Mapping[str, Any] | BaseModel | None = None) -> B:
        """Validate ``config`` against the backend's model and build the backend."""
        spec = self.get(name)
        cfg = self.validate_config(name, config)
        missing = spec.missing()
        if missing:
            hint = f"pip install 'stageflow[{spec.extra}]'" if spec.extra else "install " + ", ".join(missing)
            raise MissingDependencyError(
                f"{self.kind} backend '{name}' needs {', '.join(missing)}, which is not installed: {hint}"
            )
        backend = spec.factory(cfg)
        if not isinstance(backend, self.protocol):
            raise PluginError(
                f"{self.kind} backend '{name}' from {spec.provider} does not implement "
                f"{self.protocol.__name__}"
            )
        return cast(B, backend)  # checked against the kind's Protocol above
