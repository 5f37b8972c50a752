"""CLI command groups, one module per flow family. Each exposes ``register(app)``; modules import
their engines inside the command functions so ``stageflow --help`` stays fast.

Plugins add to the CLI through the ``register_commands(app, add_option)`` hook, called once at startup
by :func:`load_plugin_commands`: new commands on ``app``, or (``add_option``) a flag on a built-in
command made :func:`extensible`, which runs the plugin's function instead of the command. Startup
stays cheap: the built-in modules with that hook are imported by name (:data:`BUILTIN_COMMAND_PLUGINS`),
and the entry points of third-party plugins are read only when an installed distribution declares one.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    import typer

#: Built-in entry points whose module implements ``register_commands`` -> that module. Imported at every
#: CLI start, so they stay light (tests/test_plugin_commands.py checks them against the modules).
BUILTIN_COMMAND_PLUGINS: dict[str, str] = {
    "build_runner_commands": "stageflow.plugins.build_runner_commands",
}
_GROUP = "stageflow"  # the entry-point group (stageflow.plugin_manager.ENTRY_POINT_GROUP)


class CommandOption:
    """A flag a plugin added to a command (a plain class: this module loads at every CLI start)."""

    __slots__ = ("command", "flag", "param", "help", "run", "plugin")

    def __init__(
        self, command: str, flag: str, param: str, help: str, run: Callable[[], object], plugin: str
    ) -> None:
        self.command, self.flag, self.param, self.help, self.run, self.plugin = (
            command,
            flag,
            param,
            help,
            run,
            plugin,
        )


_OPTIONS: dict[str, list[CommandOption]] = {}
_EXTENSIBLE: dict[str, Callable[..., Any]] = {}


def extensible(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as the callback of command ``name`` whose flags plugins may add (``add_option``): Typer
    reads the callback's signature when it builds the Click command, after every plugin's
    ``register_commands`` ran, so an added flag is parsed and shown in ``--help`` like a built-in one."""
    hints = typing.get_type_hints(fn, include_extras=True)
    base = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in base.parameters.values()]

    def command(**kwargs: Any) -> Any:
        for opt in _OPTIONS.get(name, ()):
            if kwargs.pop(opt.param, False):
                return opt.run()
        return fn(**kwargs)

    command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    command.__module__ = fn.__module__
    command.__signature__ = base.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {k: v for k, v in hints.items() if k != "return"}
    _EXTENSIBLE[name] = command
    return command


def _add_option_for(plugin: str) -> Callable[..., None]:
    def add_option(command: str, flag: str, *, help: str, run: Callable[[], object]) -> None:
        import typer

        target = _EXTENSIBLE.get(command)
        if target is None:
            known = ", ".join(sorted(_EXTENSIBLE)) or "none"
            raise ValueError(f"command '{command}' takes no plugin options (extensible commands: {known})")
        if not re.fullmatch(r"--[a-z][a-z0-9-]*", flag):
            raise ValueError(f"option '{flag}' is not a --long-flag")
        param = flag[2:].replace("-", "_")
        sig = inspect.signature(target)
        if param in sig.parameters:
            raise ValueError(f"command '{command}' already has an option {flag}")
        option = CommandOption(command, flag, param, help, run, plugin)
        _OPTIONS.setdefault(command, []).append(option)
        annotation = Annotated[bool, typer.Option(flag, help=help)]
        new = inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=annotation)
        target.__signature__ = sig.replace(parameters=[*sig.parameters.values(), new])  # type: ignore[attr-defined]
        target.__annotations__[param] = annotation

    return add_option


def plugin_options(command: str) -> list[CommandOption]:
    """The flags plugins added to ``command`` (for tests and ``--help`` checks)."""
    return list(_OPTIONS.get(command, ()))


def _third_party_declared() -> bool:
    """Whether an installed distribution other than stageflow declares ``stageflow`` entry points:
    a directory listing per path entry and a read of each entry_points.txt, so that a start without
    third-party plugins never imports importlib.metadata. Unsure (a zip on the path): True."""
    for entry in sys.path:
        if not entry:
            entry = "."
        if os.path.isfile(entry):
            return True  # a zipped path entry: let importlib.metadata decide
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            if name.split("-", 1)[0].lower().replace(".", "_") == "stageflow":
                continue
            try:
                with open(os.path.join(entry, name, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if "stageflow" in text and any(
                line.strip().replace(" ", "") == f"[{_GROUP}]" for line in text.splitlines()
            ):
                return True
    return False


def _third_party_plugins() -> list[tuple[str, object]]:
    """Third-party plugin modules under the plugin manager's rules (autoload, STAGEFLOW_LOAD_PLUGINS,
    plugin API version); one that fails to import is left out here (``stageflow plugins`` says why)."""
    from stageflow import PLUGIN_API_VERSION, settings

    if settings.autoload_disabled() or not _third_party_declared():
        return []
    import importlib.metadata as md

    allow = settings.plugin_allow_list()
    out: list[tuple[str, object]] = []
    for ep in md.entry_points(group=_GROUP):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
        if dist == _GROUP or (allow is not None and ep.name not in allow and dist not in allow):
            continue
        try:
            plugin = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin never breaks the CLI
            continue
        if getattr(plugin, "STAGEFLOW_PLUGIN_API", PLUGIN_API_VERSION) == PLUGIN_API_VERSION:
            out.append((f"{ep.name} ({dist})", plugin))
    return out


def load_plugin_commands(app: typer.Typer) -> list[str]:
    """Call every plugin's ``register_commands(app, add_option)`` once: the built-ins of
    :data:`BUILTIN_COMMAND_PLUGINS`, then third-party plugins. A hook that raises, or that adds a
    command named like an existing one, is reported on stderr and its additions are dropped; the CLI
    still starts. Returns the problems."""
    import importlib

    import pluggy

    from stageflow import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    plugins = [(name, importlib.import_module(mod)) for name, mod in BUILTIN_COMMAND_PLUGINS.items()]
    for name, plugin in plugins + _third_party_plugins():
        try:
            pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError):
            continue  # reported by the plugin manager when a command loads plugins
    problems = []
    for impl in pm.hook.register_commands.get_hookimpls():
        commands, groups = list(app.registered_commands), list(app.registered_groups)
        options = {k: list(v) for k, v in _OPTIONS.items()}
        taken = _command_names(app)
        kwargs = {"app": app, "add_option": _add_option_for(impl.plugin_name)}
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            clash = sorted(
                n for n in _command_names(app, skip=len(commands), skip_groups=len(groups)) if n in taken
            )
            if clash:
                raise ValueError(f"command '{clash[0]}' already exists")
        except Exception as exc:  # noqa: BLE001 - one plugin's mistake never breaks the CLI
            app.registered_commands[:], app.registered_groups[:] = commands, groups
            for command, added in _OPTIONS.items():
                kept = options.get(command, [])
                for opt in added[len(kept) :]:
                    _drop_option(opt)
            problems.append(f"plugin {impl.plugin_name}: register_commands: {type(exc).__name__}: {exc}")
    for line in problems:
        print(f"stageflow: warning: {line}; its commands are left out", file=sys.stderr)
    return problems


def _command_names(app: typer.Typer, skip: int = 0, skip_groups: int = 0) -> set[str]:
    names = set()
    for info in app.registered_commands[skip:]:
        names.add(info.name or (info.callback.__name__.replace("_", "-") if info.callback else ""))
    for group in app.registered_groups[skip_groups:]:
        names.add(group.name or "")
    return names - {""}


def _drop_option(opt: CommandOption) -> None:
    _OPTIONS[opt.command].remove(opt)
    target = _EXTENSIBLE[opt.command]
    sig = inspect.signature(target)
    target.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name != opt.param]
    )
    target.__annotations__.pop(opt.param, None)
