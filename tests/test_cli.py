"""The command line: exit codes, one-line errors, --json documents, and the direct (no Prefect) path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from stageflow.samples import SAMPLES_DIR

from stageflow.cli import main

FEED = str(SAMPLES_DIR / "youtube_channel_feed.xml")


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == "stageflow 0.1.0"


def test_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("plugins", "discover", "demo", "db"):
        assert command in out


@pytest.mark.parametrize(
    "args",
    [["--help"], ["monitor", "--help"], ["build", "--help"], ["discover", "--help"], ["sync", "--help"]],
)
def test_help_shows_bracketed_names_plainly(capsys, args):
    """Help is printed without markup processing: an escaped ``\\[monitor]`` would show its
    backslash, and an unescaped one must survive as ``[monitor]``."""
    code, out, _ = run(args, capsys)
    assert code == 0 and "\\[" not in out
    if args == ["--help"]:
        assert "[monitor]" in out and "all four flow families" in " ".join(out.split())


def test_unknown_command_is_usage_error(capsys):
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "No such command" in err


def test_plugins_json_lists_builtins(capsys):
    code, out, _ = run(["plugins", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["plugin_api"] == 1
    names = {kind: [b["name"] for b in rows] for kind, rows in doc["kinds"].items()}
    assert {"folder", "rss"} <= set(names["sources"]) and "log" in names["notifiers"]
    jsonl = next(b for b in doc["kinds"]["sinks"] if b["name"] == "jsonl")
    assert jsonl == {
        "name": "jsonl",
        "distribution": "stageflow",
        "version": "0.1.0",
        "available": True,
        "missing": [],
        "extra": None,
        "description": "JSON lines, one file per table, upserted by key",
    }
    assert doc["errors"] == []


def test_plugins_reports_missing_extra(capsys, make_plugin_dist, monkeypatch):
    monkeypatch.delenv("STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD")
    make_plugin_dist(
        "stageflow-whisperish",
        {
            "sf_w": """
from stageflow.hookspecs import hookimpl
class W:
    def __init__(self, c): pass
    def transcribe(self, audio, language=None): return None
@hookimpl
def register_transcribers(register):
    register("whisperish", W, requires=("not_installed_asr",), extra="video")
"""
        },
    )
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    assert "whisperish" in out and "stageflow-whisperish 1.0" in out and "missing extra 'video'" in out


def test_plugins_shows_broken_plugins_on_stderr(capsys, make_plugin_dist, monkeypatch):
    monkeypatch.delenv("STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD")
    make_plugin_dist("stageflow-broken", {"sf_broken": "import no_such_dependency_abc\n"})
    code, out, err = run(["plugins"], capsys)
    assert code == 0 and "log" in out
    assert "skipped plugin: sf_broken (stageflow-broken 1.0) failed to import: ModuleNotFoundError" in err


def test_discover_direct_then_dedup(capsys, stageflow_home, tmp_path):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(f'[discover]\nsource = "rss"\noptions = {{ feeds = ["{FEED}"], max_age_days = 100000 }}\n')
    code, out, _ = run(["discover", "--config", str(cfg), "--json"], capsys)
    first = json.loads(out)
    assert code == 0 and first["found"] == 2 and first["new"] == 2
    assert first["written"] == {"sqlite": 2, "jsonl": 2}
    lines = (stageflow_home / "results" / "videos.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["rss:AbCdEfGhIj0", "rss:OldVideo0001"]
    code, out, _ = run(["discover", "--config", str(cfg), "--json"], capsys)
    assert json.loads(out)["new"] == 0
    assert len((stageflow_home / "results" / "videos.jsonl").read_text().splitlines()) == 2


def test_discover_unknown_notifier_fails_before_writing(capsys, stageflow_home, tmp_path):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(f'[notify]\nbackend = "pager"\n[discover]\noptions = {{ feeds = ["{FEED}"] }}\n')
    code, _, err = run(["discover", "--config", str(cfg)], capsys)
    assert code == 2
    assert err.startswith("stageflow: error: unknown notifiers backend 'pager' (known: log")
    assert err.endswith("`stageflow plugins` lists what is installed\n") and err.count("\n") == 1
    assert not (stageflow_home / "stageflow.db").exists()


def test_malformed_config_exit_2_one_line(capsys, tmp_path):
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text("[notify\n")
    code, _, err = run(["discover", "--config", str(cfg)], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{cfg}:1: invalid TOML" in err


def test_db_migrate_backup_restore_and_refusal(capsys, stageflow_home, tmp_path):
    from stageflow.store import LATEST_VERSION

    code, out, _ = run(["db", "migrate"], capsys)
    applied = ", ".join(str(v) for v in range(1, LATEST_VERSION + 1))
    assert code == 0 and f"schema version {LATEST_VERSION} (applied {applied})" in out
    code, out, _ = run(["db", "migrate"], capsys)
    assert "(up to date)" in out
    code, out, _ = run(["db", "backup", str(tmp_path / "b.db")], capsys)
    assert code == 0 and (tmp_path / "b.db.sha256").is_file()
    code, out, _ = run(["db", "restore", str(tmp_path / "b.db")], capsys)
    assert code == 0 and "restored" in out
    (tmp_path / "b.db.sha256").write_text("0" * 64 + "  b.db\n")
    code, _, err = run(["db", "restore", str(tmp_path / "b.db")], capsys)
    assert code == 3 and "does not match b.db.sha256" in err and "nothing was restored" in err


def test_home_not_writable_exit_2(capsys, tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "f" / "home"))
    code, _, err = run(["db", "migrate"], capsys)
    assert code == 2 and "is not writable" in err and "Traceback" not in err


def _subprocess(args, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "stageflow.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "STAGEFLOW_HOME": str(tmp_path / "home"), **env},
    )


def test_error_is_one_line_without_traceback_and_debug_shows_it(tmp_path):
    bad = tmp_path / "stageflow.toml"
    bad.write_text("[discover]\nsource = 'nosuch'\n")
    proc = _subprocess(["discover"], tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("stageflow: error: unknown sources backend 'nosuch' (known: folder, rss")
    assert line.endswith("`stageflow plugins` lists what is installed")
    debug = _subprocess(["--debug", "discover"], tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_help_does_not_import_prefect_or_load_plugins(tmp_path):
    code = (
        "import sys; from stageflow.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('prefect', 'stageflow.plugins.sources', 'feedparser') if m in sys.modules]\n"
        "print('IMPORTED:' + ','.join(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "IMPORTED:"


@pytest.mark.parametrize("args", [["db", "restore", "/nonexistent/x.db"]])
def test_restore_missing_file(capsys, args):
    code, _, err = run(args, capsys)
    assert code == 2 and "not found" in err
