"""stageflow.toml: found, validated, and errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import load_config
from stageflow.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stageflow.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.notify.backend == "log" and cfg.source_path is None


def test_found_in_working_directory(tmp_path, monkeypatch):
    write(tmp_path, '[notify]\nbackend = "slack"\noptions = { channel = "C1" }\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.notify.backend == "slack" and cfg.notify.options == {"channel": "C1"}
    assert cfg.source_path == tmp_path / "stageflow.toml"


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, '[notify]\nbackend = "log"\nbroken = \n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:3: invalid TOML")
    assert err.value.exit_code == 2


def test_unknown_key_names_line_key_and_known_keys(tmp_path):
    path = write(tmp_path, '# comment\n[notify]\nbackend = "log"\nbakend = "slack"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:4: unknown key 'notify.bakend' (known here: backend, options)"


def test_unknown_top_level_table(tmp_path):
    path = write(tmp_path, '[notify]\nbackend = "log"\n\n[notfy]\nx = 1\n')
    with pytest.raises(ConfigError, match=r":4: unknown key 'notfy' \(known here: notify, store"):
        load_config(path)


def test_unknown_key_in_a_list_of_tables(tmp_path):
    path = write(tmp_path, '[discover]\nsource = "rss"\nsinks = [{ backend = "jsonl", opts = {} }]\n')
    with pytest.raises(
        ConfigError, match=r"unknown key 'discover.sinks.0.opts' \(known here: backend, options\)"
    ):
        load_config(path)


def test_wrong_type_names_the_key(tmp_path):
    path = write(tmp_path, "[notify]\nbackend = 3\n")
    with pytest.raises(ConfigError, match=r":2: key 'notify.backend': Input should be a valid string"):
        load_config(path)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: pass an existing file to --config"):
        load_config(tmp_path / "nope.toml")


def test_stageflow_config_env_points_workers_at_the_project_file(tmp_path, monkeypatch):
    project = write(tmp_path, '[notify]\nbackend = "from-env"\n')
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(project))
    assert load_config().notify.backend == "from-env"
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="STAGEFLOW_CONFIG=.*missing.toml: file not found"):
        load_config()


def test_a_family_section_is_imported_only_when_present_or_read(tmp_path):
    """A sync-only stageflow.toml does not import the build, video and monitor config models (CLI
    start-up), yet reading an absent section still gives its defaults."""
    import subprocess
    import sys

    cfg = tmp_path / "stageflow.toml"
    cfg.write_text('[sync.environments.web]\nrole = "web"\ntarget = "/srv/web"\n')
    code = (
        "import sys; from pathlib import Path; from stageflow.config import load_config\n"
        f"c = load_config(Path({str(cfg)!r}))\n"
        "assert c.sync.environments['web'].role == 'web'\n"
        "loaded = [m for m in ('stageflow.build.config', 'stageflow.video.settings', "
        "'stageflow.monitor.engine') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert c.build.cache == 'local' and not c.given('build') and c.given('sync')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_key_inside_a_family_section_names_line_and_known_keys(tmp_path):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text('[notify]\nbackend = "log"\n\n[build]\ncache = "local"\nconcurency = 2\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    message = str(err.value)
    assert f"{cfg}:6: unknown key 'build.concurency'" in message
    assert "concurrency" in message
