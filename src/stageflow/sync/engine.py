"""The deploy-sync engine: profile -> safety net -> (under the target lock) change set -> transfer ->
hooks -> manifest, with automatic rollback in releases mode. Used by both the CLI and the flow.

Ordering guarantees: nothing is written to the target before the safety net passed and every
backend was built from a valid config; a dry run writes nothing anywhere; an in-place sync keeps a
pending journal so a killed sync is repaired by the next one; a releases sync only moves ``current``
to a complete release. Never imports Prefect or a plugin module.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.config import CONFIG_NAME, load_config
from stageflow.errors import BadInput, ConfigError, JobFailed, PluginError
from stageflow.sync import releases
from stageflow.sync.hooks import DeployContext, HookOutcome, PlannedHook, run_hooks
from stageflow.sync.manifest import (
    ChangeSet,
    Manifest,
    ScanResult,
    diff,
    manifest_from_json,
    manifest_id_of_json,
    manifest_to_json,
    scan,
)
from stageflow.sync.profile import EnvironmentProfile, SyncConfig
from stageflow.sync.rules import SelectionRules
from stageflow.sync.safety import RoleFound, check_pm2_configs, check_role
from stageflow.sync.target import LocalTarget, SshTarget, open_target

logger = logging.getLogger("stageflow.sync")
STORE_TABLE = "sync_manifests"


class DeployFailed(JobFailed):
    """A deploy ran and failed (a hook); ``result`` says what happened, including any rollback."""

    def __init__(self, message: str, result: SyncResult):
        super().__init__(message)
        self.result = result


@dataclass
class SyncRequest:
    source: Path
    environment: str
    target: str | None = None
    config_path: Path | None = None
    dry_run: bool = False


@dataclass
class SyncResult:
    environment: str
    target: str
    role: str
    mode: str
    release: str | None = None
    changes: ChangeSet = field(default_factory=ChangeSet)
    bytes_sent: int = 0
    files_scanned: int = 0
    excluded: int = 0
    hooks: list[HookOutcome] = field(default_factory=list)
    duration_s: float = 0.0
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    rolled_back_to: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "target": self.target,
            "role": self.role,
            "mode": self.mode,
            "release": self.release,
            "changes": self.changes.as_dict(),
            "bytes_sent": self.bytes_sent,
            "files_scanned": self.files_scanned,
            "excluded": self.excluded,
            "hooks": [{"name": h.name, "status": h.status} for h in self.hooks],
            "duration_s": round(self.duration_s, 4),
            "dry_run": self.dry_run,
            "warnings": self.warnings,
            "skipped_links": self.skipped_links,
            "rolled_back_to": self.rolled_back_to,
            "error": self.error,
        }


@dataclass
class Prepared:
    """A validated sync, safety net passed, backends built; nothing written yet."""

    request: SyncRequest
    source: Path
    config: SyncConfig
    profile: EnvironmentProfile
    target: LocalTarget | SshTarget
    role: RoleFound
    rules: SelectionRules
    transport_name: str
    transport: Any
    hooks: list[PlannedHook]
    started: float
    log: Callable[[str], None]


# ------------------------------------------------------------------------------------------ prepare
def load_profile(request: SyncRequest) -> tuple[Path, SyncConfig, EnvironmentProfile, Path]:
    source = Path(request.source).expanduser()
    if not source.is_dir():
        what = "is not a directory" if source.exists() else "does not exist"
        raise BadInput(f"source {source} {what}: pass the project's root directory as SOURCE")
    source = source.resolve()
    path = request.config_path or source / CONFIG_NAME
    if request.config_path is None and not path.is_file():
        raise BadInput(f"no {CONFIG_NAME} in {source}: add [sync.environments.NAME] there or pass --config")
    cfg = load_config(Path(path))
    profile = cfg.sync.environment(request.environment, str(path))
    return source, cfg.sync, profile, Path(path)


def _build_hooks(plugins: Any, profile: EnvironmentProfile, env: str, where: Path) -> list[PlannedHook]:
    planned = []
    for i, spec in enumerate(profile.hooks):
        try:
            backend = plugins.build("deploy_hooks", spec.use, spec.options)
        except PluginError as exc:
            raise ConfigError(f"{where}: sync.environments.{env}.hooks[{i}]: {exc}") from None
        planned.append(PlannedHook(spec.use, backend))
    return planned


def prepare(request: SyncRequest, plugins: Any = None, log: Callable[[str], None] | None = None) -> Prepared:
    """Validate everything and run the safety net. Reads the target; writes nothing."""
    started = time.perf_counter()
    if plugins is None:
        from stageflow.plugin_manager import get_plugin_manager

        plugins = get_plugin_manager()
    source, config, profile, where = load_profile(request)
    spec = request.target or profile.target
    if not spec:
        raise BadInput(
            f"environment '{request.environment}' has no target: set target in {where} or pass --target"
        )
    rules = SelectionRules.from_profile(profile, source)
    hooks = _build_hooks(plugins, profile, request.environment, where)
    check_pm2_configs(source, request.environment, profile, config)
    target = open_target(spec, profile.ssh_command, profile.ssh_options)
    transport_name = profile.transport or ("rsync" if target.remote else "local")
    options = dict(profile.transport_options)
    if transport_name == "rsync" and isinstance(target, SshTarget):
        options.setdefault("ssh", target.rsync_shell)
    try:
        transport = plugins.build("transports", transport_name, options)
    except PluginError as exc:
        raise ConfigError(f"{where}: sync.environments.{request.environment}.transport: {exc}") from None
    try:
        role = check_role(target, profile.role)
    except BaseException:
        target.close()
        raise
    return Prepared(
        request,
        source,
        config,
        profile,
        target,
        role,
        rules,
        transport_name,
        transport,
        hooks,
        started,
        log or logger.info,
    )


# ------------------------------------------------------------------------------------------ baseline
def _store_key(target: LocalTarget | SshTarget) -> str:
    return target.transport_dest("")


def _cached_manifest(key: str, wanted: str) -> Manifest | None:
    from stageflow.store import open_store

    store = open_store()
    try:
        for rec in store.records(STORE_TABLE):
            if rec.get("target") == key and rec.get("manifest_id") == wanted:
                return manifest_from_json(rec["manifest"])[0]
    finally:
        store.close()
    return None


def _remember_manifest(key: str, text: str, mid: str, **meta: Any) -> None:
    from stageflow.store import open_store

    store = open_store()
    try:
        store.upsert_records(
            STORE_TABLE,
            [{"target": key, "manifest_id": mid, "manifest": text, **meta}],
            key="target",
        )
    finally:
        store.close()


def _baseline(prep: Prepared, release: str | None, state: dict[str, Any]) -> tuple[Manifest, str | None]:
    """The manifest of what the target holds now: local store copy if its id matches the target's
    state, else the target's own copy; empty (send everything) when unknown."""
    wanted = state.get("manifest_id")
    if not isinstance(wanted, str):
        return {}, None
    if prep.profile.mode == "releases" and state.get("release") != release:
        wanted = None  # current was moved (rollback by hand): trust the release's own manifest
    key = _store_key(prep.target)
    if wanted:
        cached = _cached_manifest(key, wanted)
        if cached is not None:
            return cached, wanted
    text = prep.target.read_text(releases.manifest_path(release))
    if not text:
        return {}, None
    try:
        manifest = manifest_from_json(text)[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return {}, None
    return manifest, manifest_id_of_json(text)


def _git_short_sha(source: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "nogit"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "nogit"


def _cleanup_temps(target: LocalTarget | SshTarget, base: str, paths: list[str]) -> None:
    """Remove temp files a killed transfer may have left beside the paths it was writing."""
    dirs = sorted({os.path.dirname(p) for p in paths})
    for d in dirs:
        rel = "/".join(x for x in (base, d) if x)
        if isinstance(target, LocalTarget):
            for tmp in glob.glob(os.path.join(glob.escape(target.join(rel)), ".stageflow-tmp-*")):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            with contextlib.suppress(OSError):
                shutil.rmtree(os.path.join(target.join(rel), ".~tmp~"))
        else:
            target.run("rm -rf .~tmp~ .stageflow-tmp-* 2>/dev/null; true", cwd_rel=rel)


def _prune_empty_dirs(target: LocalTarget | SshTarget, base: str, deleted: list[str]) -> None:
    """Remove directories that deleting ``deleted`` left empty (rsync leaves them; the local
    transport already did). Only ancestors of deleted paths, never ``base`` itself."""
    dirs = sorted({os.path.dirname(p) for p in deleted} - {""}, key=len, reverse=True)
    if not dirs:
        return
    if isinstance(target, LocalTarget):
        root = target.join(base)
        for d in dirs:
            path = os.path.join(root, d)
            while path != root and os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
                os.rmdir(path)
                path = os.path.dirname(path)
    else:
        quoted = " ".join(shlex.quote(d) for d in dirs)
        target.run(f"rmdir -p --ignore-fail-on-non-empty -- {quoted} 2>/dev/null; true", cwd_rel=base)


# ------------------------------------------------------------------------------------------ execute
def _new_result(prep: Prepared, scanned: ScanResult, changes: ChangeSet, release: str | None) -> SyncResult:
    warnings = [
        f"include pattern '{p}' selects nothing" for p in prep.rules.unmatched_includes(list(scanned.files))
    ]
    warnings += [f"symlink {p} points outside the source: skipped" for p in scanned.skipped_links]
    return SyncResult(
        environment=prep.request.environment,
        target=prep.target.spec,
        role=prep.profile.role,
        mode=prep.profile.mode,
        release=release,
        changes=changes,
        files_scanned=scanned.files_scanned,
        excluded=scanned.excluded,
        dry_run=prep.request.dry_run,
        warnings=warnings,
        skipped_links=scanned.skipped_links,
    )


def plan(prep: Prepared) -> tuple[SyncResult, Manifest, dict[str, Any]]:
    """Scan and diff against the target's baseline (no writes). Returns result, new manifest, pending."""
    texts = prep.target.read_many([releases.PENDING_FILE, releases.STATE_FILE])
    pending_text = texts[releases.PENDING_FILE]
    pending: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        pending = json.loads(pending_text) if pending_text else {}
    release = releases.current_release(prep.target) if prep.profile.mode == "releases" else None
    previous, _ = _baseline(prep, release, releases.parse_state(texts[releases.STATE_FILE]))
    dirty = set(pending.get("paths", [])) if pending.get("mode") == "in-place" else set()
    scanned = scan(prep.source, prep.rules, previous)
    changes = diff(previous, scanned.files, dirty)
    # Paths now excluded or protected are left alone on the target (as rsync leaves excluded files).
    changes.deleted = [p for p in changes.deleted if not prep.rules.skip_file(p)]
    result = _new_result(prep, scanned, changes, release)
    if prep.request.dry_run or not changes:
        reason = "dry run" if prep.request.dry_run else "no changes"
        result.hooks = [
            HookOutcome(h.name, "planned" if prep.request.dry_run else "skipped", reason) for h in prep.hooks
        ]
    return result, scanned.files, pending


def execute(prep: Prepared, on_changes: Callable[[ChangeSet], None] | None = None) -> SyncResult:
    """Run a prepared sync. A dry run plans and returns without taking the lock or writing."""
    try:
        if prep.request.dry_run:
            result, _, _ = plan(prep)
        else:
            result = _locked_apply(prep, on_changes)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise JobFailed(
            f"cannot write {exc.filename or prep.target.spec} on the target ({reason}): "
            "check its owner and permissions"
        ) from None
    finally:
        prep.target.close()
    result.duration_s = time.perf_counter() - prep.started
    return result


def _locked_apply(prep: Prepared, on_changes: Callable[[ChangeSet], None] | None) -> SyncResult:
    with prep.target.lock(prep.profile.lock_timeout):
        result, manifest, pending = plan(prep)
        if result.changes or pending:
            if on_changes is not None:
                on_changes(result.changes)
            if prep.profile.mode == "releases":
                _apply_release(prep, result, manifest, pending)
            else:
                _apply_in_place(prep, result, manifest, pending)
    return result


def _apply_in_place(prep: Prepared, result: SyncResult, manifest: Manifest, pending: dict[str, Any]) -> None:
    target, changes = prep.target, result.changes
    paths = sorted(set(changes.to_send) | set(changes.deleted) | set(pending.get("paths", [])))
    stale_paths = pending.get("paths", []) if pending.get("mode") == "in-place" else []
    target.write_text(
        releases.PENDING_FILE, json.dumps({"mode": "in-place", "paths": paths}, ensure_ascii=False)
    )
    if stale_paths:
        _cleanup_temps(target, "", stale_paths)
    stats = prep.transport.send(prep.source, target.transport_dest(""), changes)
    _prune_empty_dirs(target, "", changes.deleted)
    result.bytes_sent = stats.bytes
    context = DeployContext(
        target, "", prep.source, prep.request.environment, prep.profile.role, None, changes, prep.log
    )
    result.hooks = run_hooks(prep.hooks, context) if changes else []
    _commit(prep, manifest, None)
    _fail_if_hook_failed(result, rolled_back=None)


def _apply_release(prep: Prepared, result: SyncResult, manifest: Manifest, pending: dict[str, Any]) -> None:
    target, changes = prep.target, result.changes
    previous = result.release
    stale = pending.get("release")
    if isinstance(stale, str) and stale and stale != previous:
        target.remove_tree(f"{releases.RELEASES}/{stale}")  # a killed sync's half-built release
    if not changes:
        target.remove(releases.PENDING_FILE)
        return
    new = releases.new_release_id(releases.list_releases(target), _git_short_sha(prep.source))
    target.write_text(releases.PENDING_FILE, json.dumps({"mode": "releases", "release": new}))
    base = f"{releases.RELEASES}/{previous}" if previous else ""
    target.clone_tree(base, f"{releases.RELEASES}/{new}")
    stats = prep.transport.send(prep.source, target.transport_dest(f"{releases.RELEASES}/{new}"), changes)
    _prune_empty_dirs(target, f"{releases.RELEASES}/{new}", changes.deleted)
    result.bytes_sent = stats.bytes
    text = manifest_to_json(manifest)
    mid = manifest_id_of_json(text)
    target.write_text(releases.manifest_path(new), text)
    releases.switch(target, new)
    result.release = new
    state = releases.state_text(manifest_id=mid, release=new, environment=prep.request.environment)
    target.write_many({releases.STATE_FILE: state}, remove=(releases.PENDING_FILE,))
    context = DeployContext(
        target,
        releases.CURRENT,
        prep.source,
        prep.request.environment,
        prep.profile.role,
        new,
        changes,
        prep.log,
    )
    result.hooks = run_hooks(prep.hooks, context)
    if any(h.status == "failed" for h in result.hooks):
        if previous:
            releases.rollback(target, previous)
        else:
            target.remove(releases.CURRENT)
            releases.write_state(target)
        target.remove_tree(f"{releases.RELEASES}/{new}")
        target.remove(releases.manifest_path(new))
        result.release = previous
        result.rolled_back_to = previous or "(none: first release removed)"
        prep.log(f"rolled back {prep.target.spec} to release {result.rolled_back_to}")
        _fail_if_hook_failed(result, rolled_back=result.rolled_back_to)
    _remember_manifest(_store_key(target), text, mid, release=new, environment=prep.request.environment)
    releases.prune(target, prep.profile.keep_releases)


def _commit(prep: Prepared, manifest: Manifest, release: str | None) -> None:
    text = manifest_to_json(manifest)
    mid = manifest_id_of_json(text)
    state = releases.state_text(manifest_id=mid, release=release, environment=prep.request.environment)
    prep.target.write_many(
        {releases.manifest_path(release): text, releases.STATE_FILE: state}, remove=(releases.PENDING_FILE,)
    )
    _remember_manifest(
        _store_key(prep.target), text, mid, release=release, environment=prep.request.environment
    )


def _fail_if_hook_failed(result: SyncResult, rolled_back: str | None) -> None:
    failed = next((h for h in result.hooks if h.status == "failed"), None)
    if failed is None:
        return
    message = f"hook '{failed.name}' failed: {failed.detail}"
    if rolled_back:
        message += f"; rolled back to release {rolled_back}"
    elif result.mode == "in-place":
        message += '; files were updated in place (use mode = "releases" for automatic rollback)'
    result.error = message
    raise DeployFailed(message, result)


def sync(
    request: SyncRequest,
    plugins: Any = None,
    log: Callable[[str], None] | None = None,
    on_changes: Callable[[ChangeSet], None] | None = None,
) -> SyncResult:
    """prepare + execute: the whole sync, as the CLI runs it."""
    return execute(prepare(request, plugins, log), on_changes)


def init_target(
    spec: str, role: str, ssh_command: str = "ssh", ssh_options: list[str] | None = None, force: bool = False
) -> str:
    """Write the target's role marker. Refuses to change an existing, different role unless forced."""
    from stageflow.errors import Refused
    from stageflow.sync.safety import ROLE_MARKER

    if not role.strip() or any(c.isspace() for c in role):
        raise BadInput(f"role '{role}' must be one non-empty word, e.g. apiserver")
    target = open_target(spec, ssh_command, ssh_options)
    try:
        existing = (target.read_text(ROLE_MARKER) or "").strip()
        if existing and existing != role and not force:
            raise Refused(
                f"target {spec} already declares role '{existing}', not '{role}': "
                "pass --force only if this machine really changed role"
            )
        if not target.remote:
            os.makedirs(target.root, exist_ok=True)
        target.write_text(ROLE_MARKER, role + "\n")
    except PermissionError as exc:
        raise JobFailed(
            f"cannot write {exc.filename or spec}: permission denied: run as the target's owner"
        ) from None
    finally:
        target.close()
    return target.join(ROLE_MARKER)


__all__ = [
    "DeployFailed",
    "Prepared",
    "SyncRequest",
    "SyncResult",
    "execute",
    "init_target",
    "plan",
    "prepare",
    "sync",
]
