"""``stageflow sync --verify``: compare the deployed tree with the manifest the sync leaves and add
what drifted to the change set, so the transfer repairs it (a dry run only reports)."""

from __future__ import annotations

from stageflow.sync import drift, releases
from stageflow.sync.model import Plan, Prepared


def verify(prep: Prepared, planned: Plan) -> None:
    """--verify: compare the deployed tree on the target with the manifest this sync leaves, and add
    what drifted (edited or deleted by hand, files added by hand that a sync would not keep) to the
    change set, so the transfer repairs it. Paths the rules skip (excluded, protected) are never
    looked at. A dry run only reports."""
    if not prep.request.verify:
        return
    result = planned.result
    if planned.base_id is None or (prep.profile.mode == "releases" and not result.release):
        # No manifest recorded (a first sync): everything is sent anyway, and files already there
        # were never ours to judge, so none is removed.
        result.warnings.append(
            f"--verify: {prep.target.spec} has no recorded manifest yet: nothing to verify"
        )
        return
    if prep.profile.mode == "releases":
        base = f"{releases.RELEASES}/{result.release}"
    else:
        base = ""
    expected = planned.new_manifest()
    found = drift.check(prep.target, base, expected, prep.rules.skip_path, prep.request.checksum)
    changes = result.changes
    shipped = set(changes.to_send) | set(changes.deleted)
    found.edited = [p for p in found.edited if p not in shipped and p.rstrip("/") not in changes.dirs]
    found.missing = [p for p in found.missing if p not in shipped and p.rstrip("/") not in changes.dirs]
    found.extra = [p for p in found.extra if p not in shipped]
    result.drift = {**found.as_dict(), "checksum": prep.request.checksum}
    if not found:
        return
    for path in found.edited + found.missing:
        if path.endswith("/"):
            changes.dirs.append(path[:-1])
            continue
        (changes.added if path in found.missing else changes.modified).append(path)
        changes.bytes_to_send += expected[path].size
    for path in found.extra:
        if path.endswith("/"):
            changes.gone_dirs.append(path[:-1])
        else:
            changes.deleted.append(path)
    for paths in (changes.added, changes.modified, changes.deleted, changes.dirs, changes.gone_dirs):
        paths[:] = sorted(set(paths))
    changes.ignore_times = True  # same size and mtime, other content (--checksum): rewrite anyway
    done = "would repair it (dry run)" if prep.request.dry_run else "repaired"
    result.warnings.append(f"drift on {prep.target.spec}: {found.summary()}: {done}")
