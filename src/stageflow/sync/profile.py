"""The ``[sync]`` section of stageflow.toml: one profile per environment (role, target, selection
rules, mode, hooks).

Validation only: this module never touches the source tree or the target, and never holds secrets
(hooks name a Secret block or an environment variable, never a value).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stageflow.backend_refs import BackendRef
from stageflow.errors import BadInput


class HookSpec(BaseModel):
    """One post-deploy hook: ``use`` names a deploy_hooks backend, the other keys are its options."""

    model_config = ConfigDict(extra="allow")

    use: Annotated[str, BackendRef("deploy_hooks")]

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EnvironmentProfile(BaseModel):
    """How one environment is deployed (``[sync.environments.NAME]``)."""

    model_config = ConfigDict(extra="forbid")

    role: str
    target: str | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    #: rsync --exclude-from files (rsync's FILTER RULES; see stageflow.sync.filters).
    exclude_from: str | list[str] | None = None
    #: rsync --filter='merge FILE' files ('+ PATTERN' / '- PATTERN' / '!' lines).
    filter_from: str | list[str] | None = None
    #: Files of gitignore-syntax lines, read as more ``exclude`` lines.
    ignore_from: str | list[str] | None = None
    protect: list[str] = Field(default_factory=list)
    mode: Literal["in-place", "releases"] = "in-place"
    keep_releases: int = Field(default=5, ge=1)
    #: Releases mode: what a sync does with a live release whose hooks never finished (the last
    #: sync was killed while they ran): "rerun" them (and roll back if they fail), or "rollback".
    unfinished_hooks: Literal["rerun", "rollback"] = "rerun"
    hooks: list[HookSpec] = Field(default_factory=list)
    #: PM2 app names this role runs; an ecosystem config naming another role's apps is refused.
    apps: list[str] = Field(default_factory=list)
    # default: "local" for a local target, "rsync" for user@host:/path
    transport: Annotated[str | None, BackendRef("transports", options="transport_options")] = None
    transport_options: dict[str, Any] = Field(default_factory=dict)
    ssh_command: str = "ssh"
    ssh_options: list[str] = Field(default_factory=list)
    #: How long the ssh master connection outlives a sync ("10m", "90s", "1h", seconds; 0: closed at
    #: the end of every sync). See stageflow.sync.target.parse_persist.
    ssh_persist: float = 600.0
    lock_timeout: float = Field(default=60.0, ge=0)
    #: The watchman accelerator (stageflow.sync.watch): "auto" uses a watchman server that already
    #: watches the source; true also starts one and watches the source; false never asks.
    watchman: bool | Literal["auto"] = "auto"

    @field_validator("role")
    @classmethod
    def _role_is_a_word(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("role must be one non-empty word, e.g. 'apiserver'")
        return value

    @field_validator("watchman", mode="before")
    @classmethod
    def _watchman_setting(cls, value: Any) -> bool | str:
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f'watchman must be true, false or "auto", not {value!r}')

    @field_validator("ssh_persist", mode="before")
    @classmethod
    def _persist_duration(cls, value: Any) -> float:
        from stageflow.sync.target import parse_persist

        return parse_persist(value)

    def exclude_files(self) -> list[str]:
        return _names(self.exclude_from)

    def filter_files(self) -> list[str]:
        return _names(self.filter_from)

    def ignore_files(self) -> list[str]:
        return _names(self.ignore_from)


def _names(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class SyncConfig(BaseModel):
    """The ``[sync]`` table."""

    model_config = ConfigDict(extra="forbid")

    environments: dict[str, EnvironmentProfile] = Field(default_factory=dict)

    def environment(self, name: str, where: str = "stageflow.toml") -> EnvironmentProfile:
        """The profile called ``name``, or a BadInput naming the known ones."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none defined"
            raise BadInput(
                f"unknown environment '{name}' (in {where}: {known}): add [sync.environments.{name}] "
                "or pass one of those to --env"
            ) from None
