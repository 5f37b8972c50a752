"""Test-wide isolation: Prefect's home (and its result cache) in a temp dir for the session, a fresh
STAGEFLOW_HOME per test, third-party plugins never autoloaded, no telemetry. Unit tests never start
Prefect: only tests/flows/ uses prefect_test_harness."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# Must happen before anything imports prefect (settings are read at import).
_PREFECT_HOME = tempfile.mkdtemp(prefix="stageflow-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.pop("STAGEFLOW_LOAD_PLUGINS", None)
os.environ.pop("STAGEFLOW_CONFIG", None)
# No warm sync server left behind by `stageflow sync` subprocesses; tests/sync/test_server.py turns
# it on where it is the subject.
os.environ["STAGEFLOW_SYNC_SERVER"] = "0"

# Prefect configures logging once per process, the first time a flow, the CLI or a block needs it; its
# console handler on the root logger keeps the sys.stderr of that moment. Done here, at session start,
# that is pytest's session-wide capture: done inside a test, it would be that test's capsys stream,
# closed when the test ends, and every later warning would print a "--- Logging error ---" traceback.
from prefect.logging.configuration import setup_logging  # noqa: E402

setup_logging()

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def stageflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty STAGEFLOW_HOME for every test, and a fresh plugin manager."""
    from stageflow.plugin_manager import reset_plugin_manager

    home = tmp_path / "stageflow-home"
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    reset_plugin_manager()
    yield home
    reset_plugin_manager()


@pytest.fixture
def make_plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a fake distribution on sys.path: real ``*.dist-info`` metadata with entry points in the
    ``stageflow`` group, discovered by importlib.metadata exactly as an installed package is.

    ``make_plugin_dist("stageflow-foo", {"stageflow_foo": "<module source>"}, version="1.0")``
    """
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(
        dist: str, modules: dict[str, str], version: str = "1.0", entry_points: dict[str, str] | None = None
    ):
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            created.append(module)
        eps = entry_points or {m: m for m in modules}
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(
            "[stageflow]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
        )
        importlib.invalidate_caches()
        return info

    yield make
    for module in created:
        sys.modules.pop(module, None)
