"""Process-wide settings read from the environment (STAGEFLOW_HOME and friends).

Nothing here touches the disk at import time; ``home()`` creates and checks the directory on demand.
Imports only what a Python start-up has already loaded (the warm sync server's client uses it).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

ENV_HOME = "STAGEFLOW_HOME"
ENV_LOAD_PLUGINS = "STAGEFLOW_LOAD_PLUGINS"
ENV_DISABLE_AUTOLOAD = "STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD"


def home_path() -> Path:
    """The configured home directory, without creating it."""
    raw = os.environ.get(ENV_HOME)
    return Path(raw).expanduser() if raw else Path.home() / ".stageflow"


def home() -> Path:
    """The home directory, created if needed; a clear SettingsError if it is not writable."""
    import tempfile

    from stageflow.errors import SettingsError

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
    home = Path(os.path.abspath(home_path()))
    path = home / name
    if len(str(path)) > max_len:
        import hashlib

        digest = hashlib.sha256(str(home).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        import tempfile

        path = Path(tempfile.gettempdir()) / f"stageflow-{name}-{os.getuid()}-{digest}"
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path


class UnsafeSocket(OSError):
    """A socket directory or socket file this user must not trust (another owner, loose mode)."""


def private(st: os.stat_result, kind: int) -> bool:
    """Whether ``st`` is a ``kind`` (stat.S_IFDIR, S_IFSOCK) of this user that nobody else may use."""
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.getuid() and not st.st_mode & 0o077


def checked_private(path: Path, kind: int, what: str) -> bool:
    """False when ``path`` does not exist, True when it is a private ``kind`` (see :func:`private`);
    raises :class:`UnsafeSocket` (naming ``what``: "directory", "socket") otherwise."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not private(st, kind):
        raise UnsafeSocket(f"{path}: not a {what} of uid {os.getuid()} with mode 0700")
    return True


def untrusted_ancestor(path: Path) -> str | None:
    """Why someone else could rename or replace ``path`` (or a directory above it), or None: a
    directory on the way to / (the path as written and as resolved) owned by another non-root user,
    or writable by group or others without the sticky bit (as /tmp has). A check on ``path`` itself
    is worth nothing while another user can swap it between the check and the use."""
    uid = os.getuid()
    absolute = Path(os.path.abspath(path))
    seen: set[Path] = set()
    for chain in (absolute.parents, Path(os.path.realpath(absolute)).parents):
        for directory in chain:
            if directory in seen:
                continue
            seen.add(directory)
            try:
                st = os.stat(directory)
            except OSError:
                continue
            if st.st_uid not in (uid, 0):
                return f"{directory} belongs to uid {st.st_uid}"
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                return f"{directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_socket_dir(name: str, max_len: int, *, create: bool = True) -> Path | None:
    """:func:`socket_dir`, checked: None when it does not exist (``create=False``); raises
    :class:`UnsafeSocket` for a directory owned by someone else or open to others, or one that
    another user could swap (see :func:`untrusted_ancestor`: a world-writable STAGEFLOW_HOME)."""
    path = socket_dir(name, max_len, create=False)
    why = untrusted_ancestor(path)
    if why is not None:
        raise UnsafeSocket(f"{path}: {why}, so another user could swap the socket directory")
    if create:
        path = socket_dir(name, max_len, create=True)
    return path if checked_private(path, stat.S_IFDIR, "directory") else None


def open_private_dir(path: Path) -> int:
    """Open ``path`` once (no symlink followed) and check the open directory itself: a descriptor of
    a private directory of this user, or UnsafeSocket. Use it by descriptor from then on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeSocket(f"{path}: cannot open ({exc.strerror})") from None
    if not private(os.fstat(fd), stat.S_IFDIR):
        os.close(fd)
        raise UnsafeSocket(f"{path}: not a directory of uid {os.getuid()} with mode 0700")
    return fd


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(value: object, name: str, default: float) -> float:
    """A keep-alive duration: seconds (a number, or "90s", "10m", "1h"); 0, "0", "no", "off" or false:
    off; true: ``default``. ValueError naming ``name`` otherwise."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("no", "off", "false")):
        return 0.0
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(
            f'{name} must be a duration like "10m", "90s", "1h" or seconds (0: off), not {value!r}'
        )
    return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
