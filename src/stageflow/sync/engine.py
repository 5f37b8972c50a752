"""The deploy-sync engine: profile -> safety net -> (under the target lock) change set -> transfer ->
hooks -> manifest, with automatic rollback in releases mode. Used by both the CLI and the flow.

Ordering guarantees: nothing is written to the target before the safety net passed and every
backend was built from a valid config; a dry run writes nothing anywhere; an in-place sync keeps a
pending journal so a killed sync is repaired by the next one; a releases sync only moves ``current``
to a complete release. Never imports Prefect or a plugin module.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stageflow.config import CONFIG_NAME
from stageflow.errors import BadInput, ConfigError, JobFailed, PluginError
from stageflow.sync import casefold, detect, gitscan, notify, releases, watch
from stageflow.sync.apply import apply
from stageflow.sync.hooks import HookOutcome, PlannedHook, PreflightContext
from stageflow.sync.localstate import LocalState
from stageflow.sync.manifest import (
    ChangeSet,
    Manifest,
    ScanResult,
    manifest_from_json,
    manifest_id_of_json,
    replay,
)
from stageflow.sync.model import DeployFailed, Plan, Prepared, SyncRequest, SyncResult
from stageflow.sync.profile import EnvironmentProfile
from stageflow.sync.rules import SelectionRules
from stageflow.sync.safety import ENV_VARS, ROLE_FILES, check_role, preflight_hooks
from stageflow.sync.target import LocalTarget, SshTarget, open_target
from stageflow.sync.unfinished import finish_unfinished, report_unfinished, warn_unfinished_dry_run
from stageflow.sync.verify import verify

logger = logging.getLogger("stageflow.sync")


# ------------------------------------------------------------------------------------------ prepare
def source_dir(source: Path) -> Path:
    """SOURCE resolved, refused when it is not a directory."""
    source = Path(source).expanduser()
    if not source.is_dir():
        what = "is not a directory" if source.exists() else "does not exist"
        raise BadInput(f"source {source} {what}: pass the project's root directory as SOURCE")
    return source.resolve()


def locate(source: Path, config: Path | None = None) -> tuple[Path, Path]:
    """(SOURCE resolved, the project file a sync of it reads: ``config``, else SOURCE/stageflow.toml).
    Only looks: the caller loads the file and passes its [sync] section in the :class:`SyncRequest`."""
    source = source_dir(source)
    path = config or source / CONFIG_NAME
    if config is None and not path.is_file():
        raise BadInput(f"no {CONFIG_NAME} in {source}: add [sync.environments.NAME] there or pass --config")
    return source, Path(path)


def _profile(request: SyncRequest) -> tuple[Path, EnvironmentProfile]:
    source = source_dir(request.source)
    return source, request.config.environment(request.environment, str(request.config_file))


def _sync_plugins() -> Any:
    """A plugin manager with the backends a sync can use: stageflow's own ``transports`` and
    ``deploy_hooks`` plugins and every third-party plugin (the kernel's cached ``plugins_for``; the warm
    sync server loads it once before it forks). Skipping the other built-in families (video, build,
    ...) saves importing them on every ``stageflow sync``."""
    from stageflow.plugin_manager import plugins_for

    return plugins_for(("transports", "deploy_hooks"))


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
    source, profile = _profile(request)
    config, where = request.config, request.config_file
    if plugins is None:
        plugins = _sync_plugins()
    spec = request.target or profile.target
    if not spec:
        raise BadInput(
            f"environment '{request.environment}' has no target: set target in {where} or pass --target"
        )
    rules = SelectionRules.from_profile(profile, source)
    hooks = _build_hooks(plugins, profile, request.environment, where)
    preflight_hooks(hooks, PreflightContext(source, request.environment, profile, config))
    target = open_target(spec, profile.ssh_command, profile.ssh_options, profile.ssh_persist)
    transport_name = profile.transport or ("rsync" if target.remote else "local")
    options = dict(profile.transport_options)
    if transport_name == "rsync" and isinstance(target, SshTarget):
        options.setdefault("ssh", target.rsync_shell)
    try:
        transport = plugins.build("transports", transport_name, options)
    except PluginError as exc:
        raise ConfigError(f"{where}: sync.environments.{request.environment}.transport: {exc}") from None
    watched = local = None
    if request.use_git and (profile.watchman is not False or notify.CHANNEL is not None):
        local = LocalState.open(_store_key(target), read_only=request.dry_run)
        recorded = local.meta if local else {}
        if profile.watchman is not True:  # a served sync: the server's own inotify watch
            watched = notify.look(source, recorded.get(notify.KEY))
        if watched is None and profile.watchman is not False:
            watched = watch.look(source, profile.watchman, recorded.get("watchman"))
    need_git = request.use_git and (watched is None or watched.changed is None)
    git = gitscan.StatusRun(source, rules.skip_lines) if need_git else None
    try:
        links = [releases.CURRENT] if profile.mode == "releases" else []
        files = [*ROLE_FILES, releases.PENDING_FILE, releases.STATE_FILE, *casefold.SNAPSHOT_FILES]
        snapshot = target.snapshot(files, list(ENV_VARS), links)
        role = check_role(target, profile.role, snapshot)
        if rules.protect is not None and casefold.from_snapshot(snapshot):
            rules.fold_protect_case()  # #15.16: .ENV must not land on a protected .env
    except BaseException:
        if git is not None:
            git.cancel()
        if local is not None:
            local.close()
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
        snapshot,
        git,
        watched,
        local,
    )


# ------------------------------------------------------------------------------------------ baseline
def _store_key(target: LocalTarget | SshTarget) -> str:
    return target.transport_dest("")


def _baseline(
    prep: Prepared, release: str | None, state: dict[str, Any], local: LocalState | None
) -> tuple[str | None, bool, Manifest | None]:
    """What the target holds now: (its manifest id, whether the local copy is that manifest, the
    manifest read from the target when it is not). (None, False, {}) when unknown: send everything."""
    wanted = state.get("manifest_id")
    if not isinstance(wanted, str) or not wanted:
        return None, False, {}
    releases_mode = prep.profile.mode == "releases"
    if releases_mode and state.get("release") != release:
        wanted = None  # current was moved by hand: trust the release's own manifest
    elif local is not None and local.meta.get("manifest_id") == wanted:
        if not releases_mode or local.meta.get("release") == release:
            return wanted, True, None
    if releases_mode:
        text = prep.target.read_text(releases.manifest_path(release))
        if not text:
            return None, False, {}
        try:
            manifest = manifest_from_json(text)[0]
        except (ValueError, KeyError, IndexError, TypeError):
            return None, False, {}
        mid = manifest_id_of_json(text)
        return mid, local is not None and local.meta.get("manifest_id") == mid, manifest
    assert wanted is not None
    texts = prep.target.read_many([releases.MANIFEST_FILE, releases.JOURNAL_FILE])
    found = replay(texts[releases.MANIFEST_FILE], texts[releases.JOURNAL_FILE], wanted)
    return (wanted, False, found) if found is not None else (None, False, {})


# ------------------------------------------------------------------------------------------ plan
def _new_result(
    prep: Prepared, scanned: ScanResult, changes: ChangeSet, release: str | None, unmatched: list[str]
) -> SyncResult:
    warnings = [f"include pattern '{p}' selects nothing" for p in unmatched]
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


def _git_view(prep: Prepared) -> tuple[gitscan.GitView | None, str | None]:
    if not prep.request.use_git:
        return None, "--no-git"
    if prep.git is None:
        prep.git = gitscan.StatusRun(prep.source, prep.rules.skip_lines)
    try:
        return prep.git.result(), None
    except gitscan.GitUnavailable as exc:
        return None, str(exc)


def plan(prep: Prepared, texts: dict[str, str | None] | None = None, release: str | None = None) -> Plan:
    """Scan and diff against the target's baseline (no writes to the target). ``texts`` (pending and
    state) and ``release`` (releases mode) as read under the lock; default: the prepare snapshot."""
    if texts is None:
        snap = prep.snapshot
        if snap is None:
            texts = prep.target.read_many([releases.PENDING_FILE, releases.STATE_FILE])
        else:
            texts = snap.read_many([releases.PENDING_FILE, releases.STATE_FILE])
        if prep.profile.mode == "releases":
            link = (
                snap.readlink(releases.CURRENT)
                if snap is not None
                else prep.target.readlink(releases.CURRENT)
            )
            release = link.rstrip("/").rsplit("/", 1)[-1] if link else None
    pending_text = texts[releases.PENDING_FILE]
    pending: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        pending = json.loads(pending_text) if pending_text else {}
    state = releases.parse_state(texts[releases.STATE_FILE])
    local, prep.local = prep.local, None
    if local is None:
        local = LocalState.open(_store_key(prep.target), read_only=prep.request.dry_run)
    base_id, local_ok, from_target = _baseline(prep, release, state, local)
    dirty = set(pending.get("paths", [])) if pending.get("mode") == "in-place" else set()
    inputs = detect.Inputs(prep.source, prep.rules, local, local_ok, dirty, from_target)
    detection = detect.detect(inputs, prep.watch, lambda: _git_view(prep))  # the watch: asked in prepare
    found, rules = detection.found, prep.rules
    scanned, changes, sets, deleted = found.scanned, found.changes, found.sets, found.deleted
    unmatched, full = found.unmatched, found.full
    meta: dict[str, Any] = {"source": str(prep.source), "rules": prep.rules.digest, **detection.meta}
    meta.update(skipped_links=scanned.skipped_links, unmatched=unmatched)
    # Paths now excluded or protected are left alone on the target (as rsync leaves excluded files).
    changes.deleted = [p for p in changes.deleted if not rules.skip_path(p)]
    changes.gone_dirs = [d for d in changes.gone_dirs if not rules.skip_path(d + "/")]
    result = _new_result(prep, scanned, changes, release, unmatched)
    result.accelerator = detection.accelerator
    result.accelerator_reason = detection.reason
    if prep.request.dry_run or not changes:
        why = "dry run" if prep.request.dry_run else "no changes"
        result.hooks = [
            HookOutcome(h.name, "planned" if prep.request.dry_run else "skipped", why) for h in prep.hooks
        ]
    return Plan(result, pending, state, sets, deleted, base_id, full, local, local_ok, meta)


# ------------------------------------------------------------------------------------------ execute
def execute(prep: Prepared, on_changes: Callable[[ChangeSet], None] | None = None) -> SyncResult:
    """Run a prepared sync. A dry run plans and returns without taking the lock or writing.

    In-place mode plans first from the prepare snapshot, without the lock: when nothing changed and
    no sync was interrupted, it stops there (nothing to write, so no lock and no further round trip).
    Otherwise it takes the lock, which re-reads the state; an unchanged state keeps the plan, a
    changed one (another sync finished meanwhile) plans again. Releases mode plans under the lock."""
    planned: Plan | None = None
    state_files = (releases.PENDING_FILE, releases.STATE_FILE)
    try:
        if prep.request.dry_run:
            planned = plan(prep)
            result = planned.result
            warn_unfinished_dry_run(prep, result)
            verify(prep, planned)
        elif prep.profile.mode == "in-place":
            planned = plan(prep)
            if not planned.result.changes and not planned.pending and not prep.request.verify:
                result = apply(prep, planned, on_changes)
            else:
                with prep.target.lock(prep.profile.lock_timeout, read=state_files) as held:
                    assert prep.snapshot is not None
                    if held.texts != prep.snapshot.read_many(list(state_files)):
                        _close_local(planned)
                        planned = plan(prep, held.texts)
                    verify(prep, planned)
                    result = apply(prep, planned, on_changes, held)
        else:
            with prep.target.lock(prep.profile.lock_timeout, read=state_files) as held:
                current = releases.current_release(prep.target)
                texts = held.texts
                unfinished = finish_unfinished(prep, held, current)
                if unfinished is not None:
                    texts = prep.target.read_many(list(state_files))
                    current = releases.current_release(prep.target)
                planned = plan(prep, texts, current)
                report_unfinished(planned.result, unfinished)
                verify(prep, planned)
                result = apply(prep, planned, on_changes, held)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)  # #15.13: say the disk is full
        raise JobFailed(
            f"cannot write {exc.filename or prep.target.spec} on the target ({reason}): "
            + (
                "the target's disk is full: free space on it and sync again"
                if full
                else "check its owner and permissions"
            )
        ) from None
    finally:
        prep.target.close()
        if prep.git is not None:
            prep.git.cancel()
        if prep.local is not None:  # prepared, never planned
            prep.local.close()
        _close_local(planned)
    result.duration_s = time.perf_counter() - prep.started
    result.control_bytes = prep.target.control_bytes
    return result


def _close_local(planned: Plan | None) -> None:
    if planned is not None and planned.local is not None:
        planned.local.close()


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
    """Write the target's role marker (and the case marker when its file system ignores case).
    Refuses to change an existing, different role unless forced."""
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
        casefold.record(target, casefold.probe(target))  # #15.16: a case-insensitive file system
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
    "locate",
    "plan",
    "prepare",
    "source_dir",
    "sync",
]
