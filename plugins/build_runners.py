"""Built-in build runners: ``npm``, ``pnpm`` and ``yarn``. Each runs a workspace's script chain
directly (``sh -c`` per command, pre/post scripts honoured, node_modules/.bin on PATH) and falls back
to the package manager itself (``npm run``, ``pnpm run``, ``yarn run``) only when running directly
is unsafe (a script reads npm config, Yarn Plug'n'Play) or when ``direct = false``.

Never decides what to build and never touches the cache.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import BuildOutcome, BuildTask, Register, hookimpl


class RunnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Run script commands directly instead of through the package manager (saves one node process).
    direct: bool = True
    #: Run ``pre<task>``/``post<task>`` scripts (default: as the package manager does: npm, yarn 1 and
    #: pnpm >= 8 do, pnpm 7 did not; pnpm's ``enable-pre-post-scripts`` in the root .npmrc is honoured).
    pre_post: bool | None = None
    #: Compile plain ``tsc`` / ``tsc -p X`` commands in warm, long-lived TypeScript workers that keep
    #: parsed lib and dependency declarations between workspaces (stageflow.build.warmtsc); outputs,
    #: diagnostics and exit codes are tsc's. Anything else runs as usual.
    warm_tsc: bool = True
    #: Seconds the warm tsc workers stay alive, idle, after a build, for the next build (another
    #: process) to connect to instead of starting node and parsing lib.d.ts again; 0: stopped when
    #: the build ends. ``stageflow build --stop-workers`` stops them at once.
    warm_tsc_persist: float = Field(default=600.0, ge=0)
    #: Run plain ``tsc`` / ``tsc -p X`` commands whose ``tsc`` is TypeScript >= 7 (the native
    #: compiler) on its binary directly, without the node launcher, and compile the workspaces that
    #: start together in one ``tsc -b`` process (stageflow.build.nativetsc); outputs, diagnostics and
    #: exit codes are plain tsc's.
    native_tsc: bool = True


class ScriptRunner:
    """Runs ``task.task`` of one workspace; ``manager`` names the fallback package manager."""

    manager = "npm"

    def __init__(self, config: RunnerConfig):
        self.config = config
        self.pre_post = config.pre_post  # None: what the package manager itself does in that repo
        self._warm: Any = None
        self._native: Any = None
        self._pre_post: dict[Any, bool] = {}
        self._lock = threading.Lock()

    def _pre_post_for(self, root: Any) -> bool:
        from stageflow.build import scripts

        pre_post = self.pre_post
        if pre_post is None:  # what the package manager does in that repo: read once per build
            with self._lock:
                pre_post = self._pre_post.get(root)
            if pre_post is None:
                pre_post = scripts.manager_runs_pre_post(self.manager, root)
                with self._lock:
                    self._pre_post[root] = pre_post
        return pre_post

    def coalesces(self, workspace: Any, root: Any, task: str) -> bool:
        """Whether this workspace's build is one TypeScript 7 compilation the native runner batches
        with others (the scheduler then starts it as soon as it is ready: stageflow.build.nativetsc)."""
        if not (self.config.native_tsc and self.config.direct):
            return False
        import os

        from stageflow.build import nativetsc, scripts

        chain = scripts.command_chain(workspace, task, pre_post=self._pre_post_for(root))
        if len(chain) != 1 or not scripts.direct_is_safe(chain, root):
            return False
        path = os.pathsep.join([*scripts.bin_path(workspace.path, root), os.environ.get("PATH", "")])
        return nativetsc.coalesces(chain[0][1], workspace.path, {"PATH": path})

    def run(self, task: BuildTask) -> BuildOutcome:
        from stageflow.build import scripts

        pre_post = self._pre_post_for(task.root)
        chain = scripts.command_chain(task.workspace, task.task, pre_post=pre_post)
        if not chain:
            return BuildOutcome(0, "", 0.0)
        if self.config.direct and scripts.direct_is_safe(chain, task.root):
            handler = self._handler(task.concurrency)
            return scripts.run_chain(chain, task.workspace.path, task.env, task.tracker, handler)
        return scripts.run_via_manager([self.manager, "run", task.task], task)

    def _handler(self, concurrency: int) -> Any:
        if not self.config.warm_tsc and not self.config.native_tsc:
            return None
        with self._lock:
            if self._warm is None and self.config.warm_tsc:
                from stageflow.build.warmtsc import WarmTsc

                self._warm = WarmTsc(concurrency, persist=self.config.warm_tsc_persist)
            if self._native is None and self.config.native_tsc:
                from stageflow.build.nativetsc import NativeTsc

                self._native = NativeTsc(builders=concurrency)
            warm, native = self._warm, self._native

        def handler(command: str, cwd: Any, env: Any, tracker: Any) -> tuple[int, str] | None:
            answer = native.run(command, cwd, env, tracker) if native is not None else None
            if answer is None and warm is not None:
                answer = warm.run(command, cwd, env, tracker)
            return answer

        return handler

    def close(self) -> None:
        """Let the warm tsc workers go (the engine calls this when a build ends): idle for
        ``warm_tsc_persist`` seconds, for the next build, or stopped."""
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is not None:
            warm.close()


class NpmRunner(ScriptRunner):
    manager = "npm"


class PnpmRunner(ScriptRunner):
    manager = "pnpm"


class YarnRunner(ScriptRunner):
    manager = "yarn"


@hookimpl
def register_build_runners(register: Register) -> None:
    register("npm", NpmRunner, config=RunnerConfig, description="npm workspaces; scripts run directly")
    register("pnpm", PnpmRunner, config=RunnerConfig, description="pnpm workspaces; scripts run directly")
    register("yarn", YarnRunner, config=RunnerConfig, description="yarn workspaces; scripts run directly")
