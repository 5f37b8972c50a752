"""The no-change fast path of ``stageflow build``: answers "every workspace is up to date" without
importing Typer, pydantic, pluggy or Prefect, and prints what the normal path prints for that case.

How it decides. A normal build run without selection flags records a stamp,
``REPO/.stageflow/fastpath.json``: the digest of every input its plan read (:func:`probe.inputs_digest`,
taken before the plan and again after the run, and recorded only when both agree), the task hash and
outputs of each workspace, the config values the report depends on, and the report's skeleton. The
fast path recomputes the digest, then checks each workspace's state file (same hash as stamped,
outputs on disk with the recorded size and mtime). All equal: the normal path would find every
workspace ``up-to-date``, so the fast path reports exactly that.

Must never import anything outside the standard library and :mod:`stageflow.build.probe`, never write
anything but the stamp (and only when the normal path asks), and never answer when unsure: any flag it
does not know, a missing or foreign stamp, any digest or state difference returns None and the normal
path runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from stageflow.build import probe

TYPE_CHECKING = False  # typing, dataclasses and collections.abc cost milliseconds this path must not pay
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

STAMP = "fastpath.json"
STAMP_FORMAT = 1
LOGS = ("full", "errors", "none")


class Args:
    """The ``stageflow build`` flags the fast path understands."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.as_json = False
        self.logs = "full"
        self.concurrency: int | None = None
        self.config: Path | None = None


class Answer:
    """A decided no-change run: the report document and the per-workspace lines to print."""

    def __init__(self, doc: dict[str, Any], logs: Mapping[str, str], args: Args) -> None:
        self.doc = doc
        self.logs = logs
        self.args = args


def stamp_path(root: Path) -> Path:
    return root / ".stageflow" / STAMP


# ----------------------------------------------------------------------------------------- argv
def parse(argv: Sequence[str]) -> Args | None:
    """Arguments after ``build``; None for anything but REPO, --json, --logs, -j/--concurrency, --config
    and --no-warm-tsc."""
    repo: str | None = None
    out = Args(Path("."))
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, inline = arg.partition("=")
        if arg == "--json":
            out.as_json = True
        elif arg == "--no-warm-tsc":
            pass  # chooses how builds run; an all-up-to-date run builds nothing
        elif key in ("--logs", "--concurrency", "--config") or arg in ("-j", "-c"):
            if eq:
                value = inline
            else:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            name = {"-j": "--concurrency", "-c": "--config"}.get(key, key)
            if name in values:
                return None  # repeated: let the normal path decide what that means
            values[name] = value
        elif arg.startswith("-") or repo is not None or not arg:
            return None
        else:
            repo = arg
        i += 1
    if repo is not None:
        out.repo = Path(repo)
    if "--logs" in values:
        if values["--logs"] not in LOGS:
            return None
        out.logs = values["--logs"]
    if "--concurrency" in values:
        text = values["--concurrency"]
        if not text.isdigit() or int(text) < 1:
            return None
        out.concurrency = int(text)
    if "--config" in values:
        if not values["--config"] or values["--config"].startswith("-"):
            return None
        out.config = Path(values["--config"])
    return out


# ----------------------------------------------------------------------------------------- decide
def decide(argv: Sequence[str]) -> Answer | None:
    """The up-to-date report for ``stageflow build ARGV``, or None when the normal path must run."""
    started = time.perf_counter()
    args = parse(argv)
    if args is None:
        return None
    root = args.repo.resolve()
    try:
        stamp = json.loads(stamp_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("format") != STAMP_FORMAT or stamp.get("repo") != str(root):
        return None
    config = probe.resolve_config(args.repo, args.config)
    if config is False or str(config or "") != stamp["config"]:
        return None
    config_path = config if isinstance(config, Path) else None
    digest = probe.inputs_digest(root, config_path, stamp["env"], stamp["globs"])
    if digest is None or digest != stamp["inputs"]:
        return None
    state_dir = root / ".stageflow" / "state"
    tasks: list[dict[str, Any]] = []
    logs: dict[str, str] = {}
    for t in stamp["tasks"]:
        t_started = time.perf_counter()
        if t["skip"]:
            tasks.append(
                {"name": t["name"], "hash": t["hash"], "status": "skipped", "duration_s": 0.0, "cache": ""}
            )
            tasks[-1]["reason"] = t["skip"]
            continue
        try:
            state = json.loads((state_dir / probe.state_file_name(t["name"])).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("hash") != t["hash"]:
            return None
        if state.get("outputs") != [list(f) for f in probe.fingerprint(root / t["dir"], t["outputs"])]:
            return None
        logs[t["name"]] = str(state.get("log", ""))
        tasks.append(
            {
                "name": t["name"],
                "hash": t["hash"],
                "status": "cached",
                "duration_s": round(time.perf_counter() - t_started, 3),
                "cache": "up-to-date",
            }
        )
    warnings: list[str] = []
    concurrency = args.concurrency or stamp["concurrency"] or probe.default_concurrency()
    limited = probe.memory_limited(concurrency, stamp["memory_mb"])
    if limited < concurrency:
        warnings.append(
            f"concurrency lowered from {concurrency} to {limited}: available memory "
            f"fits {limited} builds of {stamp['memory_mb']} MB"
        )
    skeleton = stamp["doc"]
    doc: dict[str, Any] = {
        "workspaces": skeleton["workspaces"],
        "changed": skeleton["changed"],
        "root_changes": skeleton["root_changes"],
        "affected": skeleton["affected"],
        "order": skeleton["order"],
        "built": [],
        "cached": [t["name"] for t in tasks if t["status"] == "cached"],
        "skipped": [t["name"] for t in tasks if t["status"] == "skipped"],
        "failed": [],
        "blocked": [],
        "duration_s": round(time.perf_counter() - started, 3),
        "dry_run": False,
        "warnings": warnings,
        "tasks": tasks,
    }
    return Answer(doc, logs, args)


def emit(answer: Answer) -> None:
    """Print what the normal path prints for an all-up-to-date run (progress lines on stderr, then
    warnings, then the summary line or the JSON document on stdout)."""
    err: list[str] = []
    for t in answer.doc["tasks"]:
        name = t["name"]
        if t["status"] == "skipped":
            detail = f"skipped ({t['reason']})"
        else:
            detail = "cached (up-to-date)"
            log = answer.logs.get(name, "")
            if answer.args.logs == "full" and log.strip():
                err.extend(f"{name}: {line}" for line in log.rstrip().splitlines())
        err.append(f"{name:<28} {detail:<24} {t['duration_s']:6.2f}s")
    err.extend(f"warning: {w}" for w in answer.doc["warnings"])
    if err:
        sys.stderr.write("\n".join(err) + "\n")
        sys.stderr.flush()
    doc = answer.doc
    if answer.args.as_json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(
            f"built 0, cached {len(doc['cached'])}, skipped {len(doc['skipped'])}, failed 0, blocked 0 "
            f"in {doc['duration_s']:.2f}s\n"
        )
    sys.stdout.flush()


def run(argv: Sequence[str]) -> bool:
    """Answer ``stageflow build ARGV`` here if every workspace is up to date; False: run the normal path.
    Nothing is printed unless the answer is certain."""
    try:
        answer = decide(argv)
    except Exception:  # the fast path only saves time: any surprise goes to the normal path
        return False
    if answer is None:
        return False
    emit(answer)
    return True


# ----------------------------------------------------------------------------------------- stamp
def discard(root: Path) -> None:
    """Forget the stamp (a build that may change state is starting)."""
    try:
        stamp_path(root).unlink(missing_ok=True)
    except OSError:
        pass


def record(
    root: Path,
    *,
    config: Path | None,
    env_vars: Sequence[str],
    globs: Sequence[str],
    inputs: str,
    concurrency: int | None,
    memory_mb: int,
    doc: Mapping[str, Any],
    tasks: Sequence[Mapping[str, Any]],
) -> None:
    """Write the stamp after a successful normal run (``tasks``: name, hash, dir, outputs, skip)."""
    stamp = {
        "format": STAMP_FORMAT,
        "repo": str(root),
        "config": str(config or ""),
        "env": sorted(env_vars),
        "globs": list(globs),
        "inputs": inputs,
        "concurrency": concurrency,
        "memory_mb": memory_mb,
        "doc": {k: doc[k] for k in ("workspaces", "changed", "root_changes", "affected", "order")},
        "tasks": [dict(t) for t in tasks],
    }
    import tempfile

    path = stamp_path(root)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fastpath-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(stamp, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # the stamp only saves time
