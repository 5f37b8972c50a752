"""Deploy targets: a local directory or ``[user@]host:/path`` reached over ssh (one multiplexed
connection per sync). Every filesystem operation the engine needs on a target lives here, so the
engine, releases and hooks are the same code for both.

A target object never decides *whether* to write (the safety net and the engine do); it never logs
file contents, and never follows symlinks out of its root when removing.
"""

from __future__ import annotations

from stageflow.sync.target.base import STATE_DIR, Held, Snapshot, Target, is_remote
from stageflow.sync.target.local import LocalTarget, clean_environment
from stageflow.sync.target.masters import DEFAULT_PERSIST, close_masters, control_dir, parse_persist
from stageflow.sync.target.ssh import SshTarget


def open_target(
    spec: str,
    ssh_command: str = "ssh",
    ssh_options: list[str] | None = None,
    persist: float = DEFAULT_PERSIST,
) -> LocalTarget | SshTarget:
    if is_remote(spec):
        return SshTarget(spec, ssh_command, ssh_options, persist)
    return LocalTarget(spec)


__all__ = [
    "DEFAULT_PERSIST",
    "STATE_DIR",
    "Held",
    "LocalTarget",
    "Snapshot",
    "SshTarget",
    "Target",
    "clean_environment",
    "close_masters",
    "control_dir",
    "is_remote",
    "open_target",
    "parse_persist",
]
