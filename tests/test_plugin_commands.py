"""The ``register_commands(app, add_option)`` hook: plugins add CLI commands and flags on built-in
commands (the npm runners own ``stageflow build --stop-workers``), a broken or clashing hook is
reported and left out, and CLI startup stays light (no pydantic, no importlib.metadata, no plugin
manager, no engine) when no third-party plugin is installed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from stageflow.commands import BUILTIN_COMMAND_PLUGINS, plugin_options
from stageflow.plugin_manager import builtin_kinds

ROOT = Path(__file__).resolve().parents[1]

GREETER = """
import typer
from stageflow.hookspecs import hookimpl

hello = typer.Typer(help="Say hello.", no_args_is_help=True)


@hello.command("world")
def world(name: str = "x"):
    typer.echo(f"hello {name}")


@hookimpl
def register_commands(app, add_option):
    app.add_typer(hello, name="hello")

    @app.command("greet")
    def greet():
        typer.echo("greetings")

    add_option("build", "--say-hi", help="Say hi instead of building.", run=lambda: typer.echo("hi there"))
"""

BROKEN = """
import typer
from stageflow.hookspecs import hookimpl


@hookimpl
def register_commands(app, add_option):
    app.command("oops")(lambda: None)
    add_option("build", "--oops", help="never shown", run=lambda: None)
    raise RuntimeError("half done")
"""

CLASH = """
from stageflow.hookspecs import hookimpl


@hookimpl
def register_commands(app):
    @app.command("build")
    def build():
        print("not the real build")
"""


def _cli(args: list[str], cwd: Path, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "stageflow.cli", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_hook_register_commands(make_plugin_dist, tmp_path):
    """A third-party plugin's command group, command and build flag work like built-in ones."""
    info = make_plugin_dist("stageflow-greeter", {"sf_greeter": GREETER})
    site = info.parent
    assert _cli(["hello", "world", "--name", "ada"], tmp_path, site).stdout == "hello ada\n"
    assert _cli(["greet"], tmp_path, site).stdout == "greetings\n"
    top = _cli(["--help"], tmp_path, site)
    assert top.returncode == 0 and "hello" in top.stdout and "greet" in top.stdout
    build_help = _cli(["build", "--help"], tmp_path, site).stdout
    assert "--say-hi" in build_help and "Say hi instead of building." in build_help
    assert "--stop-workers" in build_help  # the built-in one is still there
    said = _cli(["build", str(tmp_path / "no-such-repo"), "--say-hi"], tmp_path, site)
    assert said.returncode == 0 and said.stdout == "hi there\n", said.stderr


def test_third_party_commands_respect_the_autoload_switches(make_plugin_dist, tmp_path):
    info = make_plugin_dist("stageflow-greeter", {"sf_greeter": GREETER})
    env = {**os.environ, "PYTHONPATH": str(info.parent), "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}
    off = subprocess.run(
        [sys.executable, "-m", "stageflow.cli", "greet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert off.returncode == 2 and "No such command 'greet'" in off.stderr
    env.pop("STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD")
    env["STAGEFLOW_LOAD_PLUGINS"] = "something-else"
    other = subprocess.run(
        [sys.executable, "-m", "stageflow.cli", "greet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert other.returncode == 2
    env["STAGEFLOW_LOAD_PLUGINS"] = "stageflow-greeter"
    on = subprocess.run(
        [sys.executable, "-m", "stageflow.cli", "greet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert on.returncode == 0 and on.stdout == "greetings\n"


def test_a_raising_or_clashing_hook_is_reported_and_left_out(make_plugin_dist, tmp_path):
    make_plugin_dist("stageflow-broken-cmds", {"sf_broken_cmds": BROKEN})
    info = make_plugin_dist("stageflow-clash", {"sf_clash": CLASH})
    proc = _cli(["build", "--help"], tmp_path, info.parent)
    assert proc.returncode == 0
    assert "plugin sf_broken_cmds (stageflow-broken-cmds): register_commands: RuntimeError: half done" in (
        proc.stderr
    )
    assert "register_commands: ValueError: command 'build' already exists" in proc.stderr
    assert "--oops" not in proc.stdout and "--stop-workers" in proc.stdout
    assert "Build only what a change affects" in proc.stdout  # the real build command
    assert _cli(["oops"], tmp_path, info.parent).returncode == 2


def test_stop_workers_is_the_npm_runner_plugins_flag(tmp_path):
    """The build command itself no longer knows the flag: the build runners' plugin adds it."""
    import inspect

    from stageflow.commands import build

    assert "stop_workers" not in inspect.signature(build.build_cmd).parameters
    import stageflow.cli  # noqa: F401 - startup ran register_commands

    [opt] = [o for o in plugin_options("build") if o.flag == "--stop-workers"]
    assert opt.plugin == "build_runner_commands"
    proc = _cli(["build", "--stop-workers"], tmp_path)
    assert proc.returncode == 0 and "stopped " in proc.stderr and "warm tsc worker(s)" in proc.stderr


def test_cli_startup_imports_nothing_heavy(tmp_path):
    code = (
        "import sys; from stageflow.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('pydantic', 'importlib.metadata', 'stageflow.plugin_manager', 'stageflow.build.warmtsc',"
        " 'stageflow.plugins.build_runners')\n"
        "print('IMPORTED:' + ','.join(m for m in heavy if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "IMPORTED:", proc.stderr


def test_builtin_command_plugins_are_the_modules_with_the_hook():
    """BUILTIN_COMMAND_PLUGINS names exactly the built-in entry points whose module implements
    register_commands, and those register no stage kind (load_plugins never imports them)."""
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["stageflow"]
    with_hook = {}
    for name, module in eps.items():
        tree = ast.parse((ROOT / "plugins" / f"{module.rpartition('.')[2]}.py").read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "register_commands" for node in ast.walk(tree)
        ):
            with_hook[name] = module
    assert with_hook == BUILTIN_COMMAND_PLUGINS
    for name in with_hook:
        assert builtin_kinds(name) == ("commands",)
