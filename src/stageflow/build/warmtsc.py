"""The warm tsc runner: a few long-lived node processes that each ``require()`` a workspace's own
``typescript`` package once and run ``tsc`` compilations sent to them, instead of one ``tsc`` process
per workspace. Each compilation re-uses the parsed (and bound) declaration files of the previous ones
(``lib.*.d.ts``, dependencies' ``.d.ts``), keyed as TypeScript's own DocumentRegistry keys them and only
while the file text is unchanged; the program, type check and emit are TypeScript's, so outputs,
diagnostics and exit codes are the ones ``tsc`` gives.

Only a plain ``tsc``, ``tsc -p PATH`` or ``tsc --project PATH`` command (no other flag, no shell
syntax) whose ``tsc`` on the task's PATH is a ``typescript`` package's ``bin/tsc`` is taken;
:meth:`WarmTsc.run` returns None for anything else, and for anything that goes wrong in the worker,
and the caller runs the command as usual. Inside the worker, a project whose options ask for more than
a plain compilation (incremental/composite, diagnostics, pretty) goes through TypeScript's own
``executeCommandLine`` unchanged, and watch mode is refused.

Never decides what to build, never touches the cache or the task hash.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stageflow.build.model import ProcessTracker

#: Characters that make a command more than ``tsc`` plus words (expansions, redirections, lists, ...).
SHELL_SYNTAX = frozenset("'\"`$\\;&|<>()*?[]{}~#=!\n\t")
PROJECT_FLAGS = ("-p", "--project")


def plain_tsc_args(command: str) -> list[str] | None:
    """The arguments of a ``tsc`` / ``tsc -p X`` / ``tsc --project X`` command; None for anything else."""
    if any(ch in SHELL_SYNTAX for ch in command):
        return None
    words = shlex.split(command)
    if not words or words[0] != "tsc":
        return None
    args = words[1:]
    if not args:
        return []
    if len(args) == 2 and args[0] in PROJECT_FLAGS and not args[1].startswith("-"):
        return args
    return None


def typescript_for(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(node, typescript package dir) that ``tsc`` resolves to on ``env``'s PATH, or None when ``tsc``
    there is not a typescript package's ``bin/tsc`` run by a ``node`` on the same PATH."""
    path = env.get("PATH", "")
    tsc = shutil.which("tsc", path=path)
    node = shutil.which("node", path=path)
    if tsc is None or node is None or not os.path.isabs(tsc):
        return None
    real = Path(os.path.realpath(tsc))
    package = real.parent.parent
    if real.name != "tsc" or real.parent.name != "bin":
        return None
    try:
        manifest = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("name") != "typescript" or not (package / "lib" / "typescript.js").is_file():
        return None
    return os.path.realpath(node), str(package)


class _Worker:
    def __init__(self, node: str, package: str, env: Mapping[str, str]):
        self.where = (node, package)
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [node, "-e", WORKER_JS],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(env, STAGEFLOW_TSC_PACKAGE=package, STAGEFLOW_TSC_FD=str(write_fd)),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        self.answers = os.fdopen(read_fd, "rb")
        hello = self._read()
        if not hello or not hello.get("ready"):
            self.close()
            raise OSError("warm tsc worker did not start")

    def _read(self) -> dict[str, Any] | None:
        line = self.answers.readline()
        if not line:
            return None
        return json.loads(line)

    def run(
        self, cwd: Path, args: list[str], env: Mapping[str, str], *, warm: bool = False
    ) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        job = {"cwd": str(cwd), "args": args, "env": dict(env), "warm": warm}
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.answers.close()


class WarmTsc:
    """A pool of warm tsc workers per (node, typescript package); at most one job per worker at a time,
    so the pool grows to the build's concurrency and no further. When the first job of a pool starts,
    the other workers (up to ``size``) start in the background and parse that job's program without
    emitting anything, so their first real job finds TypeScript loaded and the lib files parsed."""

    def __init__(self, size: int = 1) -> None:
        self.size = max(1, size)
        self._lock = threading.Condition()
        self._idle: dict[tuple[str, str], list[_Worker]] = {}
        self._starting: dict[tuple[str, str], int] = {}
        self._count: dict[tuple[str, str], int] = {}
        self._all: list[_Worker] = []
        self._closed = False
        self.used = 0

    def run(
        self, command: str, cwd: Path, env: Mapping[str, str], tracker: ProcessTracker
    ) -> tuple[int, str] | None:
        """(exit code, output) of ``command`` compiled by a warm worker; None: run it as usual."""
        args = plain_tsc_args(command)
        if args is None:
            return None
        where = typescript_for(env)
        if where is None:
            return None
        worker = self._take(where, env)
        if worker is None:
            return None
        self._prestart(where, cwd, args, env)
        tracker.add(worker.proc)
        try:
            answer = worker.run(cwd, args, env)
        except (OSError, ValueError):
            answer = None
        finally:
            tracker.discard(worker.proc)
        if answer is None or "fallback" in answer:
            self._drop(worker)
            if tracker.cancelled.is_set():
                return 143, ""
            return None
        self._give_back(where, worker)
        with self._lock:
            self.used += 1
        return int(answer["code"]), str(answer["out"])

    def _take(self, where: tuple[str, str], env: Mapping[str, str]) -> _Worker | None:
        with self._lock:
            while True:
                idle = self._idle.setdefault(where, [])
                if idle:
                    return idle.pop()
                if self._closed:
                    return None
                if not self._starting.get(where):
                    break
                self._lock.wait()  # a worker being started will be idle soon: cheaper than another
            self._count[where] = self._count.get(where, 0) + 1
        return self._spawn(where, env)

    def _spawn(self, where: tuple[str, str], env: Mapping[str, str]) -> _Worker | None:
        try:
            worker = _Worker(*where, env)
        except (OSError, ValueError):
            with self._lock:
                self._count[where] -= 1
            return None
        with self._lock:
            self._all.append(worker)
        return worker

    def _prestart(self, where: tuple[str, str], cwd: Path, args: list[str], env: Mapping[str, str]) -> None:
        with self._lock:
            missing = self.size - self._count.get(where, 0)
            if missing <= 0 or self._closed:
                return
            self._count[where] += missing
            self._starting[where] = self._starting.get(where, 0) + missing

        def start() -> None:
            worker = self._spawn(where, env)
            if worker is not None:
                try:
                    answer = worker.run(cwd, args, env, warm=True)
                except (OSError, ValueError):
                    answer = None
                if answer is None or "fallback" in answer:
                    self._drop(worker)
                    worker = None
            with self._lock:
                self._starting[where] -= 1
                if worker is not None:
                    self._idle.setdefault(where, []).append(worker)
                self._lock.notify_all()

        for _ in range(missing):
            threading.Thread(target=start, name="stageflow-warm-tsc", daemon=True).start()

    def _give_back(self, where: tuple[str, str], worker: _Worker) -> None:
        with self._lock:
            self._idle.setdefault(where, []).append(worker)
            self._lock.notify_all()

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
                for where in self._count:
                    if worker.where == where:
                        self._count[where] -= 1
        worker.close()

    def close(self) -> None:
        """Stop every worker (they also exit on their own when this process goes away)."""
        with self._lock:
            self._closed = True
            workers, self._all, self._idle = self._all, [], {}
            self._lock.notify_all()
        for worker in workers:
            worker.close()


WORKER_JS = r""""use strict";
// stageflow warm tsc worker: loads one typescript package once and runs `tsc [-p X]` compilations sent
// as JSON lines on stdin, answering one JSON line each on fd 3. Parsed declaration files (lib.*.d.ts,
// dependencies' .d.ts) are kept between compilations, keyed as TypeScript's DocumentRegistry keys them
// (path, source-file-affecting options, language version, module format) and reused only when the file
// text is unchanged. Anything but a plain project compilation runs ts.executeCommandLine unchanged.
const fs = require("fs");
const ts = require(process.env.STAGEFLOW_TSC_PACKAGE);
const ANSWERS = Number(process.env.STAGEFLOW_TSC_FD);
const NEEDED = [
  "executeCommandLine", "parseCommandLine", "createCompilerHostWorker", "changeCompilerHostLikeToUseCache",
  "emitFilesAndReportErrorsAndGetExitStatus", "createDiagnosticReporter", "parseConfigFileWithSystem",
  "getConfigFileParsingDiagnostics", "convertToOptionsWithAbsolutePaths", "findConfigFile",
  "isIncrementalCompilation", "isWatchSet", "toPath", "createGetCanonicalFileName", "normalizePath",
  "combinePaths", "getNormalizedAbsolutePath", "createProgram", "createSourceFile",
];
const canCache =
  NEEDED.every((k) => typeof ts[k] === "function") && Array.isArray(ts.sourceFileAffectingCompilerOptions);
const DECLARATION = /\.d\.([cm]?ts)$|\.d\.[^/]*\.ts$/;
// ts.sys memoizes the first working directory; every job runs in its own.
ts.sys.getCurrentDirectory = () => process.cwd();
const parsed = new Map(); // key -> {text, file}
const stats = { reused: 0, parsed: 0 };

class Exit {
  constructor(code) { this.code = code; }
}

function system(out) {
  const s = Object.create(ts.sys);
  s.write = (text) => { out.push(text); };
  s.writeOutputIsTTY = () => false;
  s.getCurrentDirectory = () => process.cwd();
  s.exit = (code) => { throw new Exit(code === undefined ? 0 : code); };
  return s;
}

function optionsKey(options) {
  const values = ts.sourceFileAffectingCompilerOptions.map((o) => options[o.name]);
  return JSON.stringify(values.map((v) => (v === undefined ? null : v)));
}

function cachedGetSourceFile(host, sys, options) {
  const base = host.getSourceFile;
  const key = optionsKey(options);
  return (fileName, languageVersionOrOptions, onError, shouldCreateNewSourceFile) => {
    if (shouldCreateNewSourceFile || !DECLARATION.test(fileName)) {
      return base.call(host, fileName, languageVersionOrOptions, onError, shouldCreateNewSourceFile);
    }
    let text;
    try {
      text = sys.readFile(fileName);
    } catch (e) {
      return base.call(host, fileName, languageVersionOrOptions, onError, shouldCreateNewSourceFile);
    }
    if (text === undefined) return undefined;
    const lvo = languageVersionOrOptions;
    const lv = typeof lvo === "object"
      ? [lvo.languageVersion, lvo.impliedNodeFormat, lvo.jsDocParsingMode].join(",")
      : String(lvo);
    const k = `${fileName}\0${lv}\0${key}`;
    const hit = parsed.get(k);
    if (hit && hit.text === text) {
      stats.reused++;
      return hit.file;
    }
    const file = ts.createSourceFile(fileName, text, languageVersionOrOptions, undefined);
    parsed.set(k, { text, file });
    stats.parsed++;
    return file;
  };
}

// The plain project compilation of executeCommandLine (tsc, tsc -p X), with the shared declaration
// cache in front of the compiler host; null when this is not that case (executeCommandLine runs it).
function compileProject(args, sys, warmOnly) {
  if (!canCache) return null;
  const commandLine = ts.parseCommandLine(args, (p) => sys.readFile(p));
  const keys = Object.keys(commandLine.options);
  if (commandLine.errors.length || commandLine.fileNames.length) return null;
  if (keys.some((k) => k !== "project")) return null;
  let configFileName;
  if (commandLine.options.project) {
    const fileOrDirectory = ts.normalizePath(commandLine.options.project);
    const isDirectory = !fileOrDirectory || sys.directoryExists(fileOrDirectory);
    configFileName = isDirectory ? ts.combinePaths(fileOrDirectory, "tsconfig.json") : fileOrDirectory;
  } else {
    configFileName = ts.findConfigFile(ts.normalizePath(sys.getCurrentDirectory()), (f) => sys.fileExists(f));
  }
  if (!configFileName || !sys.fileExists(configFileName)) return null;
  const currentDirectory = sys.getCurrentDirectory();
  const commandLineOptions = ts.convertToOptionsWithAbsolutePaths(
    commandLine.options, (f) => ts.getNormalizedAbsolutePath(f, currentDirectory));
  const problems = [];
  const config = ts.parseConfigFileWithSystem(
    configFileName, commandLineOptions, new Map(), commandLine.watchOptions, sys, (d) => problems.push(d));
  if (!config || problems.length || config.errors.length) return null;
  const o = config.options;
  if (ts.isWatchSet(o)) throw new Error("watch mode is not run by the warm worker");
  // more than a plain compilation (tsbuildinfo, statistics, traces, colours): executeCommandLine runs it
  if (ts.isIncrementalCompilation(o) || o.pretty || o.diagnostics || o.extendedDiagnostics) return null;
  if (o.generateTrace || o.generateCpuProfile || o.showConfig || o.build) return null;
  const reportDiagnostic = ts.createDiagnosticReporter(sys);
  const host = ts.createCompilerHostWorker(o, undefined, sys);
  host.jsDocParsingMode = 2; // ParseForTypeErrors, as tsc
  host.getSourceFile = cachedGetSourceFile(host, sys, o);
  const getCanonicalFileName = ts.createGetCanonicalFileName(host.useCaseSensitiveFileNames());
  const toPath = (f) => ts.toPath(f, host.getCurrentDirectory(), getCanonicalFileName);
  ts.changeCompilerHostLikeToUseCache(host, toPath);
  const program = ts.createProgram({
    rootNames: config.fileNames,
    options: o,
    projectReferences: config.projectReferences,
    host,
    configFileParsingDiagnostics: ts.getConfigFileParsingDiagnostics(config),
  });
  if (warmOnly) return 0; // parsing the program filled the declaration cache; nothing is emitted
  const write = (s) => sys.write(s + sys.newLine);
  return ts.emitFilesAndReportErrorsAndGetExitStatus(program, reportDiagnostic, write, undefined);
}

function setEnv(env) {
  for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
  Object.assign(process.env, env);
}

function run(job) {
  const out = [];
  const sys = system(out);
  let code;
  let mode = "cached";
  try {
    process.chdir(job.cwd);
    setEnv(job.env);
    try {
      code = compileProject(job.args, sys, !!job.warm);
      if (code === null && job.warm) {
        code = 0;
      } else if (code === null) {
        mode = "plain";
        out.length = 0;
        ts.executeCommandLine(sys, () => {}, job.args);
        code = 0;
      }
    } catch (e) {
      if (!(e instanceof Exit)) throw e;
      code = e.code;
    }
  } catch (e) {
    return { fallback: `${e && e.stack || e}` };
  }
  return { code, out: out.join(""), mode, reused: stats.reused, parsed: stats.parsed };
}

let buffer = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffer += chunk;
  let nl;
  while ((nl = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, nl);
    buffer = buffer.slice(nl + 1);
    if (!line) continue;
    fs.writeSync(ANSWERS, JSON.stringify(run(JSON.parse(line))) + "\n");
  }
});
process.stdin.on("end", () => process.exit(0));
fs.writeSync(ANSWERS, JSON.stringify({ ready: true, version: ts.version, cache: canCache }) + "\n");
"""
