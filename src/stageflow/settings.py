"""Process-wide settings read from the environment (STAGEFLOW_HOME and friends).

Nothing here touches the disk at import time; ``home()`` creates and checks the directory on demand.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stageflow.errors import SettingsError

ENV_HOME = "STAGEFLOW_HOME"
ENV_LOAD_PLUGINS = "STAGEFLOW_LOAD_PLUGINS"
ENV_DISABLE_AUTOLOAD = "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"


def home_path() -> Path:
    """The configured home directory, without creating it."""
    raw = os.environ.get(ENV_HOME)
    return Path(raw).expanduser() if raw else Path.home() / ".stageflow"


def home() -> Path:
    """The home directory, created if needed; a clear SettingsError if it is not writable."""
    path = home_path()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(
            f"{ENV_HOME}={path} is not writable ({reason}): set {ENV_HOME} to a writable directory"
        ) from None
    return path


def store_path() -> Path:
    """Path of the SQLite store inside the home directory."""
    return home() / "stageflow.db"


def autoload_disabled() -> bool:
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() in {"1", "true", "yes", "on"}


def plugin_allow_list() -> set[str] | None:
    """Names from STAGEFLOW_LOAD_PLUGINS (entry-point or distribution names), or None if unset."""
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def socket_dir(name: str, max_len: int, *, create: bool = True) -> Path:
    """Where this user's Unix sockets of kind ``name`` (ssh masters, warm workers) live:
    ``$STAGEFLOW_HOME/<name>`` as an absolute path, or, when that is longer than ``max_len`` (a socket
    name must fit in sun_path's 104-108 bytes), ``<tmp>/stageflow-<name>-<uid>-<hash of the home>``.
    With ``create`` the directory is made with mode 0700 (its parent as needed); OSError propagates.
    Ownership and mode are the caller's to check: one refuses a loose directory, another repairs it."""
    import hashlib

    home = Path(os.path.abspath(home_path()))
    path = home / name
    if len(str(path)) > max_len:
        digest = hashlib.sha256(str(home).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"stageflow-{name}-{os.getuid()}-{digest}"
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path
