"""The native TypeScript compiler (TypeScript 7, ``npm i -D typescript`` since 7.0): run it without
its node launcher, and compile workspaces that are ready at the same time in one compiler process.

Where a TypeScript 7 workspace build's time goes (``tsc -p tsconfig.json --extendedDiagnostics`` on
the benchmark's workspaces): starting node for ``bin/tsc`` (which only ``execve``s the platform
binary of ``@typescript/typescript-<os>-<arch>``), then in the compiler about 80% parsing and binding
the ``lib.*.d.ts`` files, the rest checking and emitting the workspace's own few files. So:

- the launcher is skipped: the platform binary is run directly, with the same arguments, working
  directory and environment the launcher would give it (its outputs are the same by construction);
- workspaces the scheduler starts together (their dependencies are built) are compiled by one
  ``tsc -b --force CONFIG...`` process, which parses the lib files once for all of them and builds
  them in parallel itself. Only projects for which build mode writes exactly what ``tsc -p`` writes
  are batched: no ``references`` (build mode would build those too), nothing incremental
  (``incremental``, ``composite``, ``tsBuildInfoFile``), no ``outFile``; the ``.tsbuildinfo`` build
  mode leaves beside such a project is removed (one that existed before keeps the project out of
  the batch). A batch that fails (any diagnostic) is run again project by project, plainly, so a
  failing workspace's log, exit code and outputs are exactly plain ``tsc``'s.

TypeScript 7 has no long-lived compiling mode (``--api`` serves queries, not emit), so there is no
warm worker as for TypeScript 5 (:mod:`stageflow.build.warmtsc`, still used for it).

Never decides what to build, never touches the cache or the task hash.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stageflow.build.model import ProcessTracker
from stageflow.build.warmtsc import plain_tsc_args

#: How long the first request of a batch waits for the others the scheduler is starting.
GATHER_S = 0.01
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_INCREMENTAL = ("incremental", "composite", "tsBuildInfoFile", "outFile", "out")


def native_tsc_for(env: Mapping[str, str]) -> str | None:
    """The native compiler binary that ``tsc`` on ``env``'s PATH launches (TypeScript >= 7), or None."""
    tsc = shutil.which("tsc", path=env.get("PATH", ""))
    if tsc is None or not os.path.isabs(tsc):
        return None
    real = Path(os.path.realpath(tsc))
    package = real.parent.parent
    if real.name != "tsc" or real.parent.name != "bin" or not (package / "lib" / "getExePath.js").is_file():
        return None
    try:
        manifest = json.loads((package / "package.json").read_text())
        major = int(str(manifest.get("version", "0")).split(".")[0])
    except (OSError, ValueError):
        return None
    if manifest.get("name") != "typescript" or major < 7:
        return None
    system = {"linux": "linux", "darwin": "darwin"}.get(platform.system().lower())
    arch = _ARCH.get(platform.machine().lower())
    if system is None or arch is None:
        return None
    wanted = Path("@typescript") / f"typescript-{system}-{arch}" / "lib" / "tsc"
    for base in (package, *package.parents):  # node's resolution from the typescript package
        where = base / "node_modules" / wanted
        if where.is_file() and os.access(where, os.X_OK):
            return str(where)
    return None


# ------------------------------------------------------------------------------------------ tsconfig
def _jsonc(text: str) -> Any:
    """tsconfig's JSON with comments and trailing commas (as TypeScript reads it)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            m = re.compile(r'"(?:[^"\\\n]|\\.)*"').match(text, i)
            if m is None:
                raise ValueError("unterminated string")
            out.append(m.group())
            i = m.end()
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated comment")
            i = j + 2
        else:
            out.append(ch)
            i += 1
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", "".join(out)))


def _extended(config: Path, spec: str) -> Path | None:
    if spec.startswith(("./", "../", "/")) or spec in (".", ".."):
        path = (config.parent / spec).resolve()
        if path.is_dir():
            path = path / "tsconfig.json"
        elif not path.is_file() and path.with_name(path.name + ".json").is_file():
            path = path.with_name(path.name + ".json")
        return path if path.is_file() else None
    for base in (config.parent, *config.parent.parents):  # a package's tsconfig
        where = base / "node_modules" / spec
        for candidate in (where / "tsconfig.json", where, where.with_name(where.name + ".json")):
            if candidate.is_file():
                return candidate
    return None


def batchable(config: Path) -> Path | None:
    """The ``.tsbuildinfo`` path build mode would write for ``config``, when ``tsc -b`` on it writes
    exactly what ``tsc -p`` writes plus that file (which must not exist yet); else None."""
    options: dict[str, Any] = {}
    seen: set[Path] = set()
    chain: list[tuple[Path, dict[str, Any]]] = []
    current: Path | None = config
    while current is not None:
        if current in seen or len(seen) > 16:
            return None
        seen.add(current)
        try:
            doc = _jsonc(current.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        if current == config and doc.get("references"):
            return None
        chain.append((current, doc.get("compilerOptions") or {}))
        ext = doc.get("extends")
        if isinstance(ext, list):
            return None  # several bases: not resolved here
        current = _extended(current, ext) if isinstance(ext, str) else None
        if isinstance(ext, str) and current is None:
            return None
    for where, opts in reversed(chain):  # the base first; a nearer config overrides
        if not isinstance(opts, dict):
            return None
        for key, value in opts.items():
            if key in ("outDir", "rootDir") and isinstance(value, str):
                value = str((where.parent / value).resolve())
            options[key] = value
    if any(options.get(k) for k in _INCREMENTAL):
        return None
    stem = config.parent / config.name.removesuffix(".json")
    out_dir, root_dir = options.get("outDir"), options.get("rootDir")
    if out_dir and root_dir:
        info = Path(os.path.normpath(Path(out_dir) / os.path.relpath(stem, root_dir)))
    elif out_dir:
        info = Path(out_dir) / stem.name
    else:
        info = stem
    info = info.with_name(info.name + ".tsbuildinfo")
    return None if info.exists() else info


def config_path(cwd: Path, args: list[str]) -> Path | None:
    if not args:
        path = cwd / "tsconfig.json"
    else:
        path = cwd / args[1]
        if path.is_dir():
            path = path / "tsconfig.json"
    return path.resolve() if path.is_file() else None


def coalesces(command: str, cwd: Path, env: Mapping[str, str]) -> bool:
    """Whether :class:`NativeTsc` would batch ``command`` run in ``cwd`` (for the scheduler)."""
    args = plain_tsc_args(command)
    if args is None or native_tsc_for(env) is None:
        return False
    config = config_path(cwd, args)
    return config is not None and batchable(config) is not None


# ------------------------------------------------------------------------------------------ runner
def batch_key(exe: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Jobs batch together when they run the same binary in the same environment, apart from what
    only tells workspaces apart for scripts (npm's package variables, INIT_CWD, PATH: the compiler
    reads none of them; PATH found ``exe``)."""
    kept = sorted(
        (k, v) for k, v in env.items() if not k.startswith("npm_") and k not in ("INIT_CWD", "PATH")
    )
    return exe, json.dumps(kept)


class _Job:
    def __init__(
        self,
        config: Path,
        info: Path,
        cwd: Path,
        args: list[str],
        env: Mapping[str, str],
        key: tuple[str, str],
    ):
        self.config, self.info, self.cwd, self.args, self.env, self.key = config, info, cwd, args, env, key
        self.answer: tuple[int, str] | None = None


def _run(argv: list[str], cwd: Path, env: Mapping[str, str], tracker: ProcessTracker) -> tuple[int, str]:
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            return 127, f"cannot start {argv[0]}: {exc}\n"
        tracker.add(proc)
        try:
            code = proc.wait()
        finally:
            tracker.discard(proc)
        log.seek(0)
        return code, log.read().decode("utf-8", errors="surrogateescape")


class NativeTsc:
    """A handler for :func:`stageflow.build.scripts.run_chain`: plain ``tsc`` / ``tsc -p X`` commands
    whose ``tsc`` is TypeScript >= 7 run on the native binary, batched with the ones started with
    them; anything else returns None (run as usual)."""

    def __init__(self, builders: int = 2) -> None:
        self.builders = max(1, builders)
        self._lock = threading.Condition()
        self._queue: list[_Job] = []
        self._busy: set[tuple[str, str]] = set()
        self.batches: list[int] = []  # sizes of the batches run (for tests and reports)
        self.direct = 0

    def run(
        self, command: str, cwd: Path, env: Mapping[str, str], tracker: ProcessTracker
    ) -> tuple[int, str] | None:
        args = plain_tsc_args(command)
        if args is None:
            return None
        exe = native_tsc_for(env)
        if exe is None:
            return None
        config = config_path(cwd, args)
        info = batchable(config) if config is not None else None
        if config is None or info is None:
            with self._lock:
                self.direct += 1
            return _run([exe, *args], cwd, env, tracker)
        key = batch_key(exe, env)
        job = _Job(config, info, cwd, args, env, key)
        with self._lock:
            self._queue.append(job)
            self._lock.notify_all()
            while job.answer is None:
                if key not in self._busy:
                    self._busy.add(key)
                    break  # this thread runs the next batch
                self._lock.wait()
        if job.answer is not None:
            return job.answer
        try:
            self._lead(exe, key, tracker)
        finally:
            with self._lock:
                self._busy.discard(key)
                self._lock.notify_all()
        assert job.answer is not None
        return job.answer

    def _lead(self, exe: str, key: tuple[str, str], tracker: ProcessTracker) -> None:
        with self._lock:  # the others the scheduler starts now
            count = -1
            while count != len(self._queue):
                count = len(self._queue)
                self._lock.wait(GATHER_S)
            jobs = [j for j in self._queue if j.key == key]
            self._queue = [j for j in self._queue if j not in jobs]
            self.batches.append(len(jobs))
        answers = self._batch(exe, jobs, tracker)
        with self._lock:
            for job, answer in zip(jobs, answers, strict=True):
                job.answer = answer
            self._lock.notify_all()

    def _batch(self, exe: str, jobs: list[_Job], tracker: ProcessTracker) -> list[tuple[int, str]]:
        if len(jobs) == 1:
            job = jobs[0]
            return [_run([exe, *job.args], job.cwd, job.env, tracker)]
        argv = [exe, "-b", "--force", "--builders", str(self.builders), *(str(j.config) for j in jobs)]
        code, out = _run(argv, jobs[0].cwd, jobs[0].env, tracker)
        for job in jobs:
            try:
                job.info.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                code = code or 1  # cannot leave the tree as plain tsc would: redo plainly
        if code == 0 and not out.strip():
            return [(0, "") for _ in jobs]
        if tracker.cancelled.is_set():
            return [(143, "") for _ in jobs]
        return [_run([exe, *j.args], j.cwd, j.env, tracker) for j in jobs]  # plain tsc, one by one
