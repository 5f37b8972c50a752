"""Persistent ssh masters: where their sockets live (private to this user, or none), how long they
outlive a sync (``ssh_persist``), and ``stageflow sync --close-masters``."""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

#: Default lifetime of the ssh master after a sync (``ssh_persist``).
DEFAULT_PERSIST = 600.0
#: A unix socket path holds at most 107 bytes; ssh first binds "<ControlPath>.<16 random chars>".
_SOCKET_PATH_MAX = 107 - 17


def parse_persist(value: object) -> float:
    """``ssh_persist``: seconds (a number, or "90s", "10m", "1h"); 0, "0", "no" or false: off."""
    from stageflow.settings import parse_duration

    return parse_duration(value, "ssh_persist", DEFAULT_PERSIST)


def control_dir(create: bool = True) -> str | None:
    """The directory of this user's persistent ssh master sockets: ``$STAGEFLOW_HOME/ssh`` (mode 0700),
    or ``/tmp/stageflow-ssh-<uid>-<hash of home>`` when that path is too long for a socket name. None
    when it cannot be made private (then every sync uses its own master, closed at the end)."""
    from stageflow import settings
    from stageflow.errors import SettingsError

    try:
        if create:
            settings.home()  # a clear "not writable" is the caller's fallback, not a socket in /tmp
        # "<dir>/<8 hex>-<%C: 40 hex>" plus ssh's ".<16 random>" while binding must fit in sun_path
        path = str(settings.socket_dir("ssh", _SOCKET_PATH_MAX - 50, create=create))
    except (SettingsError, OSError):
        return None
    why = settings.untrusted_ancestor(Path(path))
    if why is not None:
        # Another user could swap the directory between our check and ssh's use of the path (ssh
        # does not check who serves a ControlPath): every sync then uses its own private master.
        if create:
            _warn_once_ssh(f"persistent ssh masters not used: {why} (above {path}); make it private")
        return None
    if not create:
        return path if os.path.isdir(path) else None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # a symlink or not a directory: never put our sockets there
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            return None  # someone else's directory
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # the directory we checked, not whatever the name points to now
    except OSError:
        return None
    finally:
        os.close(fd)
    return path


_ssh_warned: set[str] = set()


def _warn_once_ssh(message: str) -> None:
    import logging

    if message not in _ssh_warned:
        _ssh_warned.add(message)
        logging.getLogger("stageflow.sync").warning(message)


def close_masters(ssh_command: str = "ssh") -> int:
    """Stop every persistent ssh master stageflow left in :func:`control_dir`; returns how many."""
    directory = control_dir(create=False)
    if directory is None:
        return 0
    closed = 0
    for name in sorted(os.listdir(directory)):
        sock = os.path.join(directory, name)
        if not stat.S_ISSOCK(os.lstat(sock).st_mode):
            continue
        argv = [*shlex.split(ssh_command), "-o", f"ControlPath={sock}", "-O", "exit", "stageflow-master"]
        proc = subprocess.run(argv, capture_output=True, timeout=30)
        if proc.returncode == 0:
            closed += 1
            deadline = time.monotonic() + 5  # the master removes its socket as it exits: wait for it
            while os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            with contextlib.suppress(OSError):
                os.unlink(sock)  # stale: its master is gone
    from stageflow import settings

    if not directory.startswith(str(settings.home_path())):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # the /tmp fallback, when empty
    return closed
