"""The monitor's ``drift`` probe: does a deploy target still hold exactly what its last sync recorded?

It reads the target's own manifest (releases mode: the ``current`` release's; in place: the base
manifest and journal) and compares the deployed files with it (:mod:`stageflow.sync.drift`). Given
the project file and environment, the environment's rules also flag files added by hand (paths
that are excluded or protected are never looked at). Read-only: it never takes the target's lock,
never repairs (``stageflow sync --verify`` does) and never writes anywhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from stageflow.stages import CheckResult


class DriftCheckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: /path or user@host:/path; default: the environment's target.
    target: str | None = None
    #: The project file and environment whose rules (exclude, protect, include) judge extra files,
    #: and whose target, ssh_command and ssh_options are used when not given here.
    config: str | None = None
    environment: str | None = None
    ssh_command: str | None = None
    checksum: bool = False

    @model_validator(mode="after")
    def _where(self) -> DriftCheckConfig:
        if bool(self.config) != bool(self.environment):
            raise ValueError("set both 'config' (a stageflow.toml) and 'environment', or neither")
        if not self.target and not self.config:
            raise ValueError("set 'target' (/path or user@host:/path), or 'config' and 'environment'")
        return self


def probe_drift(c: DriftCheckConfig) -> CheckResult:
    from stageflow.sync import drift
    from stageflow.sync.target import open_target

    skip = None
    spec, ssh_command, ssh_options = c.target, c.ssh_command or "ssh", None
    if c.config and c.environment:
        from stageflow.config import load_config
        from stageflow.sync.rules import SelectionRules

        path = Path(c.config).expanduser()
        profile = load_config(path).sync.environment(c.environment, str(path))
        skip = SelectionRules.from_profile(profile, path.parent.resolve()).skip_path
        spec = spec or profile.target
        ssh_command = c.ssh_command or profile.ssh_command
        ssh_options = profile.ssh_options
    if not spec:
        return CheckResult("drift", False, f"environment {c.environment!r} has no target: set options.target")
    target = open_target(spec, ssh_command, ssh_options, persist=0)
    try:
        if not target.remote and not target.exists():
            return CheckResult(spec, False, f"target {spec} does not exist")
        base, expected, why = drift.recorded(target)
        if expected is None:
            return CheckResult(spec, False, f"{spec}: {why}")
        found = drift.check(target, base, expected, skip, c.checksum)
    finally:
        target.close()
    if found:
        return CheckResult(
            spec,
            False,
            f"{spec} drifted from its manifest: {found.summary()} (repair: stageflow sync --verify)",
        )
    how = "content" if c.checksum else "size and mtime"
    return CheckResult(spec, True, f"{found.checked} paths match the manifest ({how})")
