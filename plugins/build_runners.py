"""Built-in build runners: ``npm``, ``pnpm`` and ``yarn``. Each runs a workspace's script chain
directly (``sh -c`` per command, pre/post scripts honoured, node_modules/.bin on PATH) and falls back
to the package manager itself (``npm run``, ``pnpm run``, ``yarn run``) only when running directly
is unsafe (a script reads npm config, Yarn Plug'n'Play) or when ``direct = false``.

Never decides what to build and never touches the cache.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from stageflow.build.model import BuildOutcome, BuildTask
from stageflow.hookspecs import hookimpl


class RunnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Run script commands directly instead of through the package manager (saves one node process).
    direct: bool = True
    #: Run ``pre<task>``/``post<task>`` scripts (npm and yarn 1 do; pnpm >= 7 does not by default).
    pre_post: bool | None = None


class ScriptRunner:
    """Runs ``task.task`` of one workspace; ``manager`` names the fallback package manager."""

    manager = "npm"
    default_pre_post = True

    def __init__(self, config: RunnerConfig):
        self.config = config
        self.pre_post = self.default_pre_post if config.pre_post is None else config.pre_post

    def run(self, task: BuildTask) -> BuildOutcome:
        from stageflow.build import scripts

        chain = scripts.command_chain(task.workspace, task.task, pre_post=self.pre_post)
        if not chain:
            return BuildOutcome(0, "", 0.0)
        if self.config.direct and scripts.direct_is_safe(chain, task.root):
            return scripts.run_chain(chain, task.workspace.path, task.env, task.tracker)
        return scripts.run_via_manager([self.manager, "run", task.task], task)


class NpmRunner(ScriptRunner):
    manager = "npm"


class PnpmRunner(ScriptRunner):
    manager = "pnpm"
    default_pre_post = False


class YarnRunner(ScriptRunner):
    manager = "yarn"


@hookimpl
def register_build_runners(register):
    register("npm", NpmRunner, config=RunnerConfig, description="npm workspaces; scripts run directly")
    register("pnpm", PnpmRunner, config=RunnerConfig, description="pnpm workspaces; scripts run directly")
    register("yarn", YarnRunner, config=RunnerConfig, description="yarn workspaces; scripts run directly")
