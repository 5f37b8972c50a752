"""The safety net, run before anything is written: the target must declare the role the environment
expects, and every configured hook's optional ``preflight`` must pass (the pm2 hook's refuses an
ecosystem config naming another role's apps).

Read-only: this module never writes to the target or the source, and raises ``Refused`` (exit 3)
with one line saying what was expected and what was found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from stageflow.errors import Refused
from stageflow.sync.hooks import PlannedHook, PreflightContext
from stageflow.sync.target import STATE_DIR, LocalTarget, Snapshot, SshTarget

ROLE_MARKER = f"{STATE_DIR}/role"
ENV_VARS = ("STAGEFLOW_ROLE", "SERVER_TYPE")
ENV_FILES = (".env", "current/.env")
#: What read_role may read, for a one-round-trip :meth:`snapshot` of the target.
ROLE_FILES = (ROLE_MARKER, *ENV_FILES)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?SERVER_TYPE\s*=\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


@dataclass(frozen=True)
class RoleFound:
    role: str | None
    source: str  # where it was read: marker, env STAGEFLOW_ROLE, .env, hostname, or "nothing"


def read_role(target: LocalTarget | SshTarget | Snapshot, expected: str) -> RoleFound:
    """The role a target declares: its marker, else the original system's fallbacks."""
    marker = target.read_text(ROLE_MARKER)
    if marker is not None and marker.strip():
        return RoleFound(marker.strip().splitlines()[0].strip(), f"marker {ROLE_MARKER}")
    for name in ENV_VARS:
        value = target.env(name)
        if value:
            return RoleFound(value.strip(), f"environment variable {name}")
    for env_file in ENV_FILES:
        text = target.read_text(env_file)
        m = _ENV_LINE.search(text or "")
        if m:
            return RoleFound(m.group(1), f"SERVER_TYPE line in {env_file}")
    host = target.hostname()
    if expected and expected.lower() in host.lower():
        return RoleFound(expected, f"hostname {host}")
    return RoleFound(None, "nothing")


def check_role(target: LocalTarget | SshTarget, expected: str, snapshot: Snapshot | None = None) -> RoleFound:
    """Refuse unless the target declares ``expected``. ``snapshot`` (taken with ROLE_FILES and
    ENV_VARS) answers the reads without further round trips; it is never a cached verdict."""
    if not target.remote and not target.exists():
        raise Refused(
            f"target {target.root} does not exist, so it declares no role (expected '{expected}'): "
            f"create it with `stageflow target init {target.spec} --role {expected}`"
        )
    found = read_role(snapshot if snapshot is not None else target, expected)
    if found.role is None:
        raise Refused(
            f"target {target.spec} declares no role (expected '{expected}'; no {ROLE_MARKER}, "
            f"STAGEFLOW_ROLE, SERVER_TYPE or matching hostname): run "
            f"`stageflow target init {target.spec} --role {expected}` on a target you have checked"
        )
    if found.role != expected:
        raise Refused(
            f"role mismatch on {target.spec}: expected '{expected}', found '{found.role}' "
            f"(from {found.source}); nothing was written: check --env and the target"
        )
    return found


def preflight_hooks(hooks: Sequence[PlannedHook], context: PreflightContext) -> None:
    """Call ``preflight(context)`` on every configured hook backend that has one, in order; the first
    ``Refused`` (or ``BadInput``) stops the sync before the target is opened."""
    for hook in hooks:
        preflight = getattr(hook.backend, "preflight", None)
        if callable(preflight):
            preflight(context)
