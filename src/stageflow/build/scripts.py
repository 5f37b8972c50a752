"""Package scripts: the command chain of a task (``pre<task>``, ``<task>``, ``post<task>``), the
environment a package manager would give it (node_modules/.bin on PATH, npm_* variables, the
NODE_OPTIONS memory cap), and running that chain directly with ``sh -c``, one process per command,
instead of paying a package-manager process per task.

Never decides *whether* to build (the engine does); never reads or writes the cache.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stageflow.build.model import BuildOutcome, BuildTask, ProcessTracker, Workspace

#: Scripts that read npm's own configuration need npm itself to run them.
NEEDS_PACKAGE_MANAGER = ("npm_config_", "$npm_execpath", "${npm_execpath}")


def command_chain(ws: Workspace, task: str, *, pre_post: bool = True) -> list[tuple[str, str]]:
    """(lifecycle event, command) pairs to run for ``task``; empty when the script is missing."""
    if task not in ws.scripts:
        return []
    events = [f"pre{task}", task, f"post{task}"] if pre_post else [task]
    return [(e, ws.scripts[e]) for e in events if e in ws.scripts]


def manager_runs_pre_post(manager: str, root: Path) -> bool:
    """Whether ``<manager> run <task>`` runs ``pre<task>``/``post<task>`` in the repo at ``root``: npm
    and yarn 1 do; pnpm 7 did not, pnpm 8 and later do unless ``enable-pre-post-scripts=false`` is in
    the root ``.npmrc``. The pnpm major comes from the root ``packageManager`` field (absent: current)."""
    if manager != "pnpm":
        return True
    try:
        for line in (root / ".npmrc").read_text().splitlines():
            key, eq, value = line.partition("=")
            if eq and key.strip() == "enable-pre-post-scripts":
                return value.strip().lower() == "true"
    except (OSError, UnicodeDecodeError):
        pass
    try:
        import json

        declared = str(json.loads((root / "package.json").read_text()).get("packageManager", ""))
    except (OSError, ValueError, AttributeError):
        declared = ""
    name, _, version = declared.partition("@")
    major = version.split(".")[0]
    return not (name == "pnpm" and major.isdigit() and int(major) < 8)


def direct_is_safe(chain: Sequence[tuple[str, str]], root: Path) -> bool:
    """Running without the package manager is safe unless a script reads npm config or the repo uses
    Yarn Plug'n'Play (whose resolution needs yarn's loader)."""
    if (root / ".pnp.cjs").exists() or (root / ".pnp.js").exists():
        return False
    return not any(marker in cmd for _, cmd in chain for marker in NEEDS_PACKAGE_MANAGER)


def bin_path(ws_path: Path, root: Path) -> list[str]:
    """``node_modules/.bin`` of the workspace and each parent up to the root, nearest first."""
    out: list[str] = []
    current = ws_path
    while True:
        out.append(str(current / "node_modules" / ".bin"))
        if current == root or current.parent == current:
            break
        current = current.parent
    return out


def task_env(
    ws: Workspace,
    root: Path,
    task: str,
    *,
    memory_mb: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a task: ``base`` (default os.environ), node_modules/.bin first on PATH,
    npm's package variables, and NODE_OPTIONS=--max-old-space-size unless the user set NODE_OPTIONS."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([*bin_path(ws.path, root), env.get("PATH", "")])
    if not env.get("NODE_OPTIONS"):
        env["NODE_OPTIONS"] = f"--max-old-space-size={memory_mb}"
    env.update(
        {
            "npm_package_name": ws.name,
            "npm_package_version": ws.version,
            "npm_package_json": str(ws.path / "package.json"),
            "npm_lifecycle_event": task,
            "INIT_CWD": str(root),
        }
    )
    return env


#: Runs one command another way (the warm tsc runner): (exit code, output), or None to run it with sh.
Handler = Callable[[str, Path, Mapping[str, str], ProcessTracker], tuple[int, str] | None]


def run_chain(
    chain: Sequence[tuple[str, str]],
    cwd: Path,
    env: Mapping[str, str],
    tracker: ProcessTracker,
    handler: Handler | None = None,
) -> BuildOutcome:
    """Run each command with ``sh -c`` in ``cwd``, stopping at the first failure; stdout and stderr are
    captured together, in order. ``handler`` may run a command itself (None: it runs with sh)."""
    started = time.perf_counter()
    code = 0
    commands: list[str] = []
    with tempfile.TemporaryFile() as log:
        for event, command in chain:
            if tracker.cancelled.is_set():
                code = 130
                break
            commands.append(command)
            run_env = dict(env, npm_lifecycle_event=event, npm_lifecycle_script=command)
            handled = handler(command, cwd, run_env, tracker) if handler is not None else None
            if handled is not None:
                code, output = handled
                log.write(output.encode("utf-8", errors="surrogateescape"))
                if code != 0:
                    break
                continue
            try:
                proc = subprocess.Popen(
                    ["sh", "-c", command],
                    cwd=cwd,
                    env=run_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                log.write(f"cannot start {command!r}: {exc}\n".encode())
                code = 127
                break
            tracker.add(proc)
            try:
                code = proc.wait()
            finally:
                tracker.discard(proc)
            if code != 0:
                break
        log.seek(0)
        text = log.read().decode("utf-8", errors="replace")
    return BuildOutcome(
        code if code >= 0 else 128 - code, text, time.perf_counter() - started, tuple(commands)
    )


def run_via_manager(argv: Sequence[str], task: BuildTask) -> BuildOutcome:
    """Run ``argv`` (e.g. ``npm run build``) in the workspace: the fallback when direct is unsafe."""
    return run_chain(
        [(task.task, " ".join(_quote(a) for a in argv))], task.workspace.path, task.env, task.tracker
    )


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
