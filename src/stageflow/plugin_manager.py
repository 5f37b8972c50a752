"""Loads plugins from the ``stageflow`` entry-point group (built-ins and third parties alike) and
fills one registry per stage kind.

Rules (DESIGN §2): built on demand by ``get_plugin_manager()`` and cached, never at import time;
``STAGEFLOW_LOAD_PLUGINS`` restricts third-party plugins to a comma list of entry-point or
distribution names; ``STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD=1`` loads built-ins only; a plugin that fails
to import, targets another plugin API version, or defines a misspelled hook is reported and skipped;
two backends with one name is an error naming both distributions.

Callers reach a kind through its typed accessor (``manager.sinks.build(name, options) -> Sink``);
an engine that needs only some kinds asks :func:`plugins_for` (``load_plugins(kinds=...)``, cached),
which skips importing the other built-in plugin modules.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata as md
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pluggy
from pydantic import BaseModel

from stageflow import PLUGIN_API_VERSION, hookspecs, settings
from stageflow.errors import PluginError
from stageflow.registry import BackendSpec, NoConfig, Registry
from stageflow.stages import KINDS

if TYPE_CHECKING:
    from stageflow.stages import (
        Analyzer,
        BuildCache,
        BuildRunner,
        Check,
        CommerceApi,
        DeployHook,
        Detector,
        Downloader,
        Notifier,
        OcrEngine,
        Sink,
        Source,
        Transcriber,
        Transport,
    )

ENTRY_POINT_GROUP = "stageflow"
BUILTIN_DISTRIBUTION = "stageflow"

#: Built-in entry points that register kinds other than their own name (the others register the
#: kind they are named after). tests/test_plugin_manager.py checks this against the plugin modules.
BUILTIN_EXTRA_KINDS: dict[str, tuple[str, ...]] = {
    "slack": ("notifiers",),
    "gsheets": ("sinks", "sources"),
    # no stage kind: its only hook is register_commands, which the CLI loads itself at startup
    # (stageflow.commands.BUILTIN_COMMAND_PLUGINS), so load_plugins never imports it
    "build_runner_commands": ("commands",),
}


def builtin_kinds(entry_point_name: str) -> tuple[str, ...]:
    """The kinds a built-in entry point registers."""
    return BUILTIN_EXTRA_KINDS.get(entry_point_name, (entry_point_name,))


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    builtin: bool


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that was reported and skipped."""

    plugin: str
    distribution: str
    error: str


@dataclass
class StageflowPluginManager:
    """The loaded plugins and one registry per kind. Build with :func:`load_plugins`."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry[Any]]
    loaded: list[LoadedPlugin] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)
    #: The kinds whose built-in plugins were loaded (all of them unless ``load_plugins(kinds=...)``).
    kinds: frozenset[str] = frozenset(KINDS)

    def registry(self, kind: str) -> Registry[Any]:
        if kind in self.registries and kind not in self.kinds:
            raise PluginError(
                f"stage kind '{kind}' was not loaded by this plugin manager "
                f"(loaded: {', '.join(sorted(self.kinds))}): pass it to load_plugins(kinds=...)"
            )
        try:
            return self.registries[kind]
        except KeyError:
            raise PluginError(f"unknown stage kind '{kind}' (kinds: {', '.join(KINDS)})") from None

    def build(self, kind: str, name: str, config: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """Untyped: prefer the kind's accessor (``self.sinks.build(...)``), which returns its Protocol."""
        return self.registry(kind).build(name, config)

    # Typed access, one accessor per kind: ``manager.<kind>.build(name, options)`` returns the
    # kind's Protocol type (stageflow.stages), checked at run time by the registry.
    @property
    def sources(self) -> Registry[Source]:
        return cast("Registry[Source]", self.registry("sources"))

    @property
    def downloaders(self) -> Registry[Downloader]:
        return cast("Registry[Downloader]", self.registry("downloaders"))

    @property
    def transcribers(self) -> Registry[Transcriber]:
        return cast("Registry[Transcriber]", self.registry("transcribers"))

    @property
    def detectors(self) -> Registry[Detector]:
        return cast("Registry[Detector]", self.registry("detectors"))

    @property
    def ocr_engines(self) -> Registry[OcrEngine]:
        return cast("Registry[OcrEngine]", self.registry("ocr_engines"))

    @property
    def analyzers(self) -> Registry[Analyzer]:
        return cast("Registry[Analyzer]", self.registry("analyzers"))

    @property
    def commerce(self) -> Registry[CommerceApi]:
        return cast("Registry[CommerceApi]", self.registry("commerce"))

    @property
    def sinks(self) -> Registry[Sink]:
        return cast("Registry[Sink]", self.registry("sinks"))

    @property
    def notifiers(self) -> Registry[Notifier]:
        return cast("Registry[Notifier]", self.registry("notifiers"))

    @property
    def transports(self) -> Registry[Transport]:
        return cast("Registry[Transport]", self.registry("transports"))

    @property
    def build_runners(self) -> Registry[BuildRunner]:
        return cast("Registry[BuildRunner]", self.registry("build_runners"))

    @property
    def build_caches(self) -> Registry[BuildCache]:
        return cast("Registry[BuildCache]", self.registry("build_caches"))

    @property
    def deploy_hooks(self) -> Registry[DeployHook]:
        return cast("Registry[DeployHook]", self.registry("deploy_hooks"))

    @property
    def checks(self) -> Registry[Check]:
        return cast("Registry[Check]", self.registry("checks"))


def _new_pluggy() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("?", "?")
    return (dist.metadata["Name"] or "?", dist.version or "?")


def _selected(ep: md.EntryPoint, dist_name: str, kinds: frozenset[str]) -> bool:
    if dist_name == BUILTIN_DISTRIBUTION:
        return any(k in kinds for k in builtin_kinds(ep.name))
    if settings.autoload_disabled():
        return False
    allow = settings.plugin_allow_list()
    return allow is None or ep.name in allow or dist_name in allow


def _misspelled_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    known = [f"register_{k}" for k in KINDS]
    out = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            guess = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean '{guess[0]}'?)" if guess else f" (hooks: {', '.join(known)})"
            out.append(f"'{caller.name}' is not a stageflow hook{hint}")
    return out


def load_plugins(
    entry_points: Iterable[md.EntryPoint] | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
    *,
    kinds: Iterable[str] | None = None,
) -> StageflowPluginManager:
    """Build a fresh plugin manager: load entry points, register extra plugin objects (tests), and
    collect every backend into its kind's registry. ``kinds`` loads only the built-in plugin modules
    that register those kinds (third-party plugins always load: they may add any kind), and the
    other kinds' registries refuse to be used."""
    wanted = frozenset(KINDS) if kinds is None else frozenset(kinds)
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise PluginError(f"unknown stage kind(s) {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
    pm = _new_pluggy()
    registries: dict[str, Registry[Any]] = {k: Registry(k, proto) for k, proto in KINDS.items()}
    manager = StageflowPluginManager(pm, registries, kinds=wanted)
    dists: dict[int, tuple[str, str]] = {}

    eps = md.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points
    seen: set[tuple[str, str, str]] = set()
    candidates: list[tuple[str, object | md.EntryPoint, str, str]] = []
    for ep in eps:
        dist_name, version = _dist_of(ep)
        key = (dist_name, ep.name, ep.value)
        if key in seen or not _selected(ep, dist_name, wanted):
            continue
        seen.add(key)
        candidates.append((ep.name, ep, dist_name, version))
    for name, obj in extra_plugins:
        candidates.append((name, obj, f"<{name}>", "0"))

    for name, target, dist_name, version in candidates:
        label = f"{name} ({dist_name} {version})"
        if isinstance(target, md.EntryPoint):
            try:
                plugin = target.load()
            except Exception as exc:  # a broken plugin is reported, never fatal
                manager.problems.append(
                    PluginProblem(name, dist_name, f"{label} failed to import: {type(exc).__name__}: {exc}")
                )
                continue
        else:
            plugin = target
        api = getattr(plugin, "STAGEFLOW_PLUGIN_API", PLUGIN_API_VERSION)
        if api != PLUGIN_API_VERSION:
            manager.problems.append(
                PluginProblem(
                    name,
                    dist_name,
                    f"{label} targets stageflow plugin API {api}, this stageflow provides "
                    f"{PLUGIN_API_VERSION}: install a version of {dist_name} made for it",
                )
            )
            continue
        try:
            pm.register(plugin, name=f"{dist_name}:{name}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            manager.problems.append(PluginProblem(name, dist_name, f"{label} cannot be registered: {exc}"))
            continue
        bad = _misspelled_hooks(pm, plugin)
        if bad:
            pm.unregister(plugin)
            manager.problems.append(PluginProblem(name, dist_name, f"{label}: {'; '.join(bad)}"))
            continue
        dists[id(plugin)] = (dist_name, version)
        manager.loaded.append(LoadedPlugin(name, dist_name, version, dist_name == BUILTIN_DISTRIBUTION))

    pm.check_pending()  # every remaining hookimpl has a spec; raises otherwise
    _collect(manager, dists)
    return manager


def _collect(manager: StageflowPluginManager, dists: dict[int, tuple[str, str]]) -> None:
    for kind in KINDS:
        caller = getattr(manager.pm.hook, f"register_{kind}")
        impls = sorted(  # built-ins first, so a clash reads "stageflow X and <third party> Y"
            caller.get_hookimpls(), key=lambda i: dists.get(id(i.plugin), ("?",))[0] != BUILTIN_DISTRIBUTION
        )
        for impl in impls:
            dist_name, version = dists.get(id(impl.plugin), ("?", "?"))

            def register(
                name: str,
                factory: Any,
                *,
                config: type[BaseModel] = NoConfig,
                requires: Iterable[str] = (),
                extra: str | None = None,
                description: str = "",
                _kind: str = kind,
                _impl: Any = impl,
                _dist: tuple[str, str] = (dist_name, version),
            ) -> None:
                manager.registries[_kind].add(
                    BackendSpec(
                        kind=_kind,
                        name=name,
                        factory=factory,
                        config=config,
                        requires=tuple(requires),
                        extra=extra,
                        description=description,
                        distribution=_dist[0],
                        version=_dist[1],
                        plugin=_impl.plugin_name,
                    )
                )

            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except PluginError:
                raise  # duplicates and invalid names are the user's to fix, loudly
            except Exception as exc:
                manager.problems.append(
                    PluginProblem(
                        impl.plugin_name,
                        dist_name,
                        f"{impl.plugin_name}.register_{kind} raised {type(exc).__name__}: {exc}",
                    )
                )


@functools.cache
def get_plugin_manager() -> StageflowPluginManager:
    """The process-wide plugin manager, built on first use."""
    return load_plugins()


_SUBSETS: dict[frozenset[str], StageflowPluginManager] = {}


def plugins_for(kinds: Iterable[str]) -> StageflowPluginManager:
    """A process-wide manager with at least ``kinds`` loaded: the full one when it is already built,
    else one of only those kinds' built-in modules (cached; what an engine that needs a few kinds
    asks for, so ``stageflow build`` does not import the video plugins)."""
    if get_plugin_manager.cache_info().currsize:
        return get_plugin_manager()
    key = frozenset(kinds)
    if key not in _SUBSETS:
        _SUBSETS[key] = load_plugins(kinds=key)
    return _SUBSETS[key]


def reset_plugin_manager() -> None:
    """Forget the cached managers (tests, or after installing a plugin in-process)."""
    get_plugin_manager.cache_clear()
    _SUBSETS.clear()
