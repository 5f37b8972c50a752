"""Built-in post-deploy hooks: ``env-file`` (a .env file from a Prefect Secret block or an
environment variable, mode 600), ``shell`` (a command in the deployed directory, over ssh when
remote), ``template-merge`` (merge a package.json scripts template, with a timestamped backup),
``pm2`` (reload or start an ecosystem config, then save) and ``health`` (HTTP GET until 2xx).

A shell hook gets a clean environment (PATH, HOME, locale...) plus exactly its ``pass_env`` names;
over ssh their values travel on the session's stdin, never on a command line.
Hooks act through the DeployContext's target only. They never log or raise secret values: env-file
reports the file it wrote and the byte count, nothing of the contents.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stageflow.api import BadInput, DeployContext, HookOutcome, Refused, Register, hookimpl
from stageflow.sync.hooks import PreflightContext


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


# ------------------------------------------------------------------------------------------ env-file
class EnvFileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = None  # Prefect Secret block name
    env: str | None = None  # or: name of a local environment variable holding the file's contents
    path: str = ".env.production"

    @model_validator(mode="after")
    def _one_source(self) -> EnvFileConfig:
        if bool(self.secret) == bool(self.env):
            raise ValueError(
                "set exactly one of 'secret' (a Prefect Secret block) or 'env' (a variable name)"
            )
        return self


class EnvFileHook:
    def __init__(self, config: EnvFileConfig):
        self.config = config

    def _contents(self) -> str:
        if self.config.env:
            value = os.environ.get(self.config.env)
            if value is None:
                raise BadInput(f"env-file hook: environment variable {self.config.env} is not set: export it")
            return value
        from prefect.blocks.system import Secret

        try:
            block: Any = Secret.load(cast(str, self.config.secret))  # the validator: secret is set here
            value = block.get()
        except ValueError:
            raise BadInput(
                f"env-file hook: Secret block '{self.config.secret}' not found: create it in Prefect"
            ) from None
        return value if isinstance(value, str) else json.dumps(value)

    def run(self, context: DeployContext) -> HookOutcome:
        text = self._contents()
        if text and not text.endswith("\n"):
            text += "\n"
        context.target.write_text(context.path(self.config.path), text, mode=0o600)
        return HookOutcome(
            "env-file", "ok", f"wrote {self.config.path} ({len(text.encode())} bytes, mode 600)"
        )


# ------------------------------------------------------------------------------------------ shell
class ShellConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str
    timeout: float | None = 900
    #: Names of local environment variables passed to the command (values never logged).
    pass_env: list[str] = Field(default_factory=list)


class ShellHook:
    def __init__(self, config: ShellConfig):
        self.config = config

    def run(self, context: DeployContext) -> HookOutcome:
        env = {k: os.environ[k] for k in self.config.pass_env if k in os.environ}
        try:
            proc = context.target.run(
                self.config.run,
                cwd_rel=context.directory,
                env=env,
                timeout=self.config.timeout,
                inherit_env=False,  # a clean environment plus exactly the pass_env names
            )
        except Exception as exc:  # subprocess.TimeoutExpired and friends
            return HookOutcome("shell", "failed", f"`{self.config.run}`: {type(exc).__name__}")
        if proc.returncode != 0:
            return HookOutcome(
                "shell",
                "failed",
                f"`{self.config.run}` exited {proc.returncode}: "
                f"{_last_line(proc.stderr) or _last_line(proc.stdout)}",
            )
        return HookOutcome("shell", "ok", f"`{self.config.run}`")


# ------------------------------------------------------------------------------------------ template-merge
class TemplateMergeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str  # JSON file in the source, e.g. deploy/package.scripts.apiserver.json
    into: str = "package.json"
    key: str = "scripts"


class TemplateMergeHook:
    """Merge ``template[key]`` (or the whole template when it has no such key) into the target's
    ``into[key]``, keeping a ``<into>.bak-<UTC timestamp>`` copy of the file it replaced."""

    def __init__(self, config: TemplateMergeConfig):
        self.config = config

    def run(self, context: DeployContext) -> HookOutcome:
        cfg = self.config
        try:
            template = json.loads((context.source / cfg.template).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return HookOutcome("template-merge", "failed", f"template {cfg.template} not found in the source")
        except json.JSONDecodeError as exc:
            return HookOutcome(
                "template-merge", "failed", f"template {cfg.template} is not JSON: line {exc.lineno}"
            )
        additions = template.get(cfg.key, template) if isinstance(template, dict) else None
        if not isinstance(additions, dict):
            return HookOutcome(
                "template-merge", "failed", f"template {cfg.template} has no '{cfg.key}' object"
            )
        rel = context.path(cfg.into)
        current_text = context.target.read_text(rel)
        if current_text is None:
            return HookOutcome("template-merge", "failed", f"{cfg.into} not found on the target")
        try:
            data: dict[str, Any] = json.loads(current_text)
        except json.JSONDecodeError as exc:
            return HookOutcome(
                "template-merge", "failed", f"{cfg.into} on the target is not JSON: line {exc.lineno}"
            )
        merged = {**data.get(cfg.key, {}), **additions}
        if merged == data.get(cfg.key):
            return HookOutcome("template-merge", "ok", f"{cfg.into} already has the template's {cfg.key}")
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        context.target.write_text(f"{rel}.bak-{stamp}", current_text)
        data[cfg.key] = merged
        context.target.write_text(rel, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return HookOutcome(
            "template-merge",
            "ok",
            f"merged {len(additions)} {cfg.key} into {cfg.into} (backup {cfg.into}.bak-{stamp})",
        )


# ------------------------------------------------------------------------------------------ pm2
#: Substrings by which pm2 recognises an ecosystem file; any other name is started as a script.
PM2_CONFIG_MARKERS = (".json", ".yml", ".yaml", ".config.js", ".config.cjs", ".config.mjs")
_APP_NAME = re.compile(r"""\bname\s*:\s*['"]([^'"]+)['"]""")


def ecosystem_apps(path: Path) -> list[str]:
    """App names declared in a PM2 ecosystem file (``name: '...'`` entries)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"PM2 ecosystem config '{path}' not found: fix the pm2 hook's config path") from None
    return _APP_NAME.findall(text)


class Pm2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str  # ecosystem file, relative to the deployed directory (and the source root)
    pm2: str = "pm2"
    update_env: bool = True
    save: bool = True
    timeout: float = 120

    @field_validator("config")
    @classmethod
    def _pm2_reads_it_as_a_config(cls, value: str) -> str:
        if not any(marker in value for marker in PM2_CONFIG_MARKERS):
            raise ValueError(
                f"pm2 would run '{value}' as a script, not read it as an ecosystem file: "
                "name it like ecosystem.apiserver.config.cjs (pm2 needs .config.js/.cjs/.mjs, .json or .yml)"
            )
        return value


class Pm2Hook:
    """``pm2 reload CONFIG --update-env`` when the config's apps run, ``pm2 start CONFIG`` otherwise,
    then ``pm2 save``; all run in the deployed directory on the target."""

    def __init__(self, config: Pm2Config):
        self.config = config

    def _pm2(self, context: DeployContext, args: str) -> tuple[int, str]:
        proc = context.target.run(
            f"{shlex.quote(self.config.pm2)} {args}", cwd_rel=context.directory, timeout=self.config.timeout
        )
        return proc.returncode, proc.stdout + "\n" + proc.stderr

    def preflight(self, context: PreflightContext) -> None:
        """The PM2 guard: refuse an ecosystem config that names another environment's apps (or, when
        this environment lists its ``apps``, an app it does not run)."""
        env_name, apps = context.environment, context.profile.apps
        others = context.other_apps()
        for app in ecosystem_apps(context.source / self.config.config):
            if app in apps:
                continue
            if app in others:
                raise Refused(
                    f"PM2 config {self.config.config} names app '{app}' of environment "
                    f"'{others[app]}', not '{env_name}' (apps: {', '.join(apps) or 'none'}): "
                    "use this role's ecosystem file"
                )
            if apps:
                raise Refused(
                    f"PM2 config {self.config.config} names app '{app}', which environment "
                    f"'{env_name}' does not run (apps: {', '.join(apps)}): "
                    "add it to apps or fix the file"
                )

    def run(self, context: DeployContext) -> HookOutcome:
        apps = ecosystem_apps(context.source / self.config.config)
        rc, out = self._pm2(context, "jlist")
        if rc == 127:
            return HookOutcome(
                "pm2", "failed", f"'{self.config.pm2}' not found on the target: npm install -g pm2"
            )
        try:
            running = {
                p.get("name") for p in json.loads(out.strip().splitlines()[0] if out.strip() else "[]")
            }
        except (json.JSONDecodeError, AttributeError, IndexError):
            running = set()
        cfg = shlex.quote(self.config.config)
        if apps and all(a in running for a in apps):
            verb, args = "reload", f"reload {cfg}" + (" --update-env" if self.config.update_env else "")
        else:
            verb, args = "start", f"start {cfg}"
        rc, out = self._pm2(context, args)
        if rc != 0:
            return HookOutcome(
                "pm2", "failed", f"pm2 {verb} {self.config.config} exited {rc}: {_last_line(out)}"
            )
        if self.config.save:
            rc, out = self._pm2(context, "save")
            if rc != 0:
                return HookOutcome("pm2", "failed", f"pm2 save exited {rc}: {_last_line(out)}")
        return HookOutcome("pm2", "ok", f"{verb} {self.config.config} ({', '.join(apps) or 'no app names'})")


# ------------------------------------------------------------------------------------------ health
class HealthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    timeout: float = Field(default=30.0, gt=0)
    interval: float = Field(default=0.5, gt=0)
    request_timeout: float = Field(default=5.0, gt=0)


class HealthHook:
    """GET ``url`` from the deploying machine until a 2xx answer, retrying until ``timeout``."""

    def __init__(self, config: HealthConfig):
        self.config = config

    def run(self, context: DeployContext) -> HookOutcome:
        import httpx

        deadline = time.monotonic() + self.config.timeout
        tries, last = 0, "no answer"
        while True:
            tries += 1
            try:
                resp = httpx.get(self.config.url, timeout=self.config.request_timeout, follow_redirects=True)
                if 200 <= resp.status_code < 300:
                    return HookOutcome(
                        "health", "ok", f"{self.config.url}: {resp.status_code} after {tries} tries"
                    )
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() + self.config.interval > deadline:
                return HookOutcome(
                    "health",
                    "failed",
                    f"{self.config.url}: {last} after {tries} tries ({self.config.timeout:g} s)",
                )
            time.sleep(self.config.interval)


@hookimpl
def register_deploy_hooks(register: Register) -> None:
    register(
        "env-file",
        EnvFileHook,
        config=EnvFileConfig,
        description="Write a .env file (mode 600) from a Prefect Secret block or an env var",
    )
    register("shell", ShellHook, config=ShellConfig, description="Run a command in the deployed directory")
    register(
        "template-merge",
        TemplateMergeHook,
        config=TemplateMergeConfig,
        description="Merge a package.json scripts template, with a timestamped backup",
    )
    register(
        "pm2", Pm2Hook, config=Pm2Config, description="pm2 reload --update-env (or start), then pm2 save"
    )
    register("health", HealthHook, config=HealthConfig, description="HTTP GET until 2xx or a timeout")
