"""The ``[build]`` table of stageflow.toml, validated strictly (unknown keys are errors).

This module only describes options; it never touches the disk or runs anything.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.backend_refs import BackendRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceOverride(_Strict):
    """Per-workspace options: ``[build.workspaces."@scope/web"] outputs = [".next/"]``."""

    outputs: list[str] | None = None
    #: Workspace dependencies of this workspace not treated as build edges (e.g. to break a cycle).
    ignore_dependencies: list[str] = Field(default_factory=list)


class RoleConfig(_Strict):
    """A named subset built together (e.g. one server's apps); dependencies are pulled in."""

    workspaces: list[str] = Field(default_factory=list)


class BuildConfig(_Strict):
    """Options of the selective build (all optional)."""

    task: str = "build"
    #: Root files or gitignore-style patterns (e.g. ``tsconfig.base.json``) that affect every workspace.
    global_inputs: list[str] = Field(default_factory=list)
    #: Environment variables whose values are part of every task hash.
    env: list[str] = Field(default_factory=list)
    #: Default outputs of a workspace, relative to it (restored from the cache on a hit).
    outputs: list[str] = Field(default_factory=lambda: ["dist/"])
    #: ``--max-old-space-size`` given to each build through NODE_OPTIONS (unless NODE_OPTIONS is set).
    memory_mb: int = Field(default=1024, ge=64)
    concurrency: int | None = Field(default=None, ge=1)
    #: Build runner backend (npm, pnpm, yarn); default: detected from the lockfile.
    runner: Annotated[str | None, BackendRef("build_runners", options="runner_options")] = None
    runner_options: dict[str, Any] = Field(default_factory=dict)
    #: Build cache backend (local, http) and its options.
    cache: Annotated[str, BackendRef("build_caches", options="cache_options")] = "local"
    cache_options: dict[str, Any] = Field(default_factory=dict)
    workspaces: dict[str, WorkspaceOverride] = Field(default_factory=dict)
    #: Dependency edges ``"dependent -> dependency"`` not treated as build edges (e.g. to break a cycle).
    ignore_edges: list[str] = Field(default_factory=list)
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
