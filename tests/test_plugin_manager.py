"""The plugin manager over real entry points: built-ins, third parties, and every failure mode."""

from __future__ import annotations

import pytest

from stageflow.errors import (
    ConfigError,
    DuplicateBackendError,
    MissingDependencyError,
    PluginError,
    UnknownBackendError,
)
from stageflow.plugin_manager import get_plugin_manager, load_plugins

NOTIFIER = """
from stageflow.hookspecs import hookimpl

class Echo:
    def __init__(self, config):
        self.sent = []
    def notify(self, message):
        self.sent.append(message.title)

@hookimpl
def register_notifiers(register):
    register("{name}", Echo, description="test notifier")
"""


@pytest.fixture
def autoload(monkeypatch):
    monkeypatch.delenv("STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def test_builtins_register_through_entry_points():
    manager = load_plugins()
    assert {"rss", "folder"} <= set(manager.registry("sources").names())
    assert {"sqlite", "jsonl"} <= set(manager.registry("sinks").names())
    spec = manager.registry("notifiers").get("log")
    assert (spec.distribution, spec.plugin) == ("stageflow", "stageflow:notifiers")
    assert all(p.builtin for p in manager.loaded)
    assert manager.problems == []


def test_third_party_plugin_is_loaded_with_its_distribution(make_plugin_dist, autoload):
    make_plugin_dist("stageflow-echo", {"sf_echo": NOTIFIER.format(name="echo")}, version="2.3")
    manager = load_plugins()
    spec = manager.registry("notifiers").get("echo")
    assert (spec.distribution, spec.version) == ("stageflow-echo", "2.3")
    backend = manager.build("notifiers", "echo")
    from stageflow.stages import Message

    backend.notify(Message(title="hi"))
    assert backend.sent == ["hi"]


def test_autoload_disabled_keeps_builtins_only(make_plugin_dist):
    make_plugin_dist("stageflow-echo", {"sf_echo": NOTIFIER.format(name="echo")})
    names = load_plugins().registry("notifiers").names()
    assert "echo" not in names and "log" in names


def test_allow_list_restricts_third_party(make_plugin_dist, autoload, monkeypatch):
    make_plugin_dist("stageflow-a", {"sf_a": NOTIFIER.format(name="a")})
    make_plugin_dist("stageflow-b", {"sf_b": NOTIFIER.format(name="b")})
    monkeypatch.setenv("STAGEFLOW_LOAD_PLUGINS", "stageflow-b")
    names = load_plugins().registry("notifiers").names()
    assert "b" in names and "a" not in names and "log" in names


def test_plugin_that_raises_on_import_is_reported_and_skipped(make_plugin_dist, autoload):
    make_plugin_dist("stageflow-broken", {"sf_broken": "raise RuntimeError('boom at import')\n"})
    make_plugin_dist("stageflow-echo", {"sf_echo": NOTIFIER.format(name="echo")})
    manager = load_plugins()
    assert "echo" in manager.registry("notifiers").names()
    [problem] = manager.problems
    assert problem.distribution == "stageflow-broken"
    assert "failed to import" in problem.error and "boom at import" in problem.error


def test_misspelled_hook_is_reported_with_a_suggestion(make_plugin_dist, autoload):
    source = NOTIFIER.format(name="typo").replace("def register_notifiers", "def register_notifers")
    make_plugin_dist("stageflow-typo", {"sf_typo": source})
    manager = load_plugins()
    assert "typo" not in manager.registry("notifiers").names()
    [problem] = manager.problems
    assert "'register_notifers' is not a stageflow hook" in problem.error
    assert "did you mean 'register_notifiers'" in problem.error


def test_hookimpl_with_unknown_argument_is_reported(make_plugin_dist, autoload):
    source = NOTIFIER.format(name="x").replace(
        "def register_notifiers(register)", "def register_notifiers(reg)"
    )
    make_plugin_dist("stageflow-badargs", {"sf_badargs": source})
    manager = load_plugins()
    [problem] = manager.problems
    assert "cannot be registered" in problem.error and "stageflow-badargs" in problem.error


def test_duplicate_backend_names_name_both_distributions(make_plugin_dist, autoload):
    make_plugin_dist("stageflow-one", {"sf_one": NOTIFIER.format(name="dup")}, version="1.0")
    make_plugin_dist("stageflow-two", {"sf_two": NOTIFIER.format(name="dup")}, version="2.0")
    with pytest.raises(DuplicateBackendError) as err:
        load_plugins()
    message = str(err.value)
    assert "'dup'" in message and "stageflow-one 1.0" in message and "stageflow-two 2.0" in message


def test_duplicate_of_a_builtin_name_is_an_error(make_plugin_dist, autoload):
    make_plugin_dist("stageflow-shadow", {"sf_shadow": NOTIFIER.format(name="log")})
    with pytest.raises(DuplicateBackendError, match="stageflow 0.1.0 and stageflow-shadow"):
        load_plugins()


def test_plugin_api_version_fence(make_plugin_dist, autoload):
    source = "STAGEFLOW_PLUGIN_API = 2\n" + NOTIFIER.format(name="future")
    make_plugin_dist("stageflow-future", {"sf_future": source})
    manager = load_plugins()
    assert "future" not in manager.registry("notifiers").names()
    assert "targets stageflow plugin API 2" in manager.problems[0].error


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(UnknownBackendError) as err:
        load_plugins().build("sinks", "postgres")
    assert "unknown sinks backend 'postgres'" in str(err.value)
    assert "jsonl, sqlite" in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_kind_is_an_error():
    with pytest.raises(PluginError, match="unknown stage kind 'widgets'"):
        load_plugins().registry("widgets")


def test_backend_config_is_validated_with_the_key_named():
    with pytest.raises(ConfigError, match=r"sinks backend 'jsonl': option 'directory': Field required"):
        load_plugins().build("sinks", "jsonl", {})
    with pytest.raises(ConfigError, match="option 'colour'"):
        load_plugins().build("notifiers", "log", {"colour": "red"})


def test_missing_optional_dependency_names_the_extra(make_plugin_dist, autoload):
    source = NOTIFIER.format(name="needy").replace(
        'description="test notifier"', 'requires=("no_such_module_xyz",), extra="video"'
    )
    make_plugin_dist("stageflow-needy", {"sf_needy": source})
    manager = load_plugins()
    assert manager.registry("notifiers").get("needy").missing() == ["no_such_module_xyz"]
    with pytest.raises(MissingDependencyError, match=r"pip install 'stageflow\[video\]'"):
        manager.build("notifiers", "needy")


def test_backend_not_satisfying_its_protocol_is_refused(make_plugin_dist, autoload):
    source = NOTIFIER.format(name="mute").replace("def notify(self, message)", "def shout(self, message)")
    make_plugin_dist("stageflow-mute", {"sf_mute": source})
    with pytest.raises(PluginError, match="does not implement Notifier"):
        load_plugins().build("notifiers", "mute")


def test_plugin_manager_is_a_cached_factory_not_built_at_import():
    import stageflow.plugin_manager as module

    assert not any(isinstance(v, module.StageflowPluginManager) for v in vars(module).values())
    assert get_plugin_manager() is get_plugin_manager()
