"use strict";
// stageflow warm tsc worker: loads one typescript package once and runs `tsc [-p X]` compilations sent
// as JSON lines on a Unix socket, answering one JSON line each. Parsed declaration files (lib.*.d.ts,
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

// One connection at a time is served (a build holds it, under its slot's lock, for the whole build);
// others wait their turn. {"idle": S} sets how long to stay alive once no build holds a connection;
// {"stop": true}, on any connection, ends the worker at once.
const net = require("net");
const SOCKET = process.env.STAGEFLOW_TSC_SOCKET;
let idleMs = Number(process.env.STAGEFLOW_TSC_IDLE || "0") * 1000;
let listening = null; // the socket file's inode, so the worker never removes another worker's socket
let active = null;
let timer = null;
const waiting = [];

function quit() {
  try {
    if (listening !== null && fs.statSync(SOCKET).ino === listening) fs.unlinkSync(SOCKET);
  } catch (e) {}
  process.exit(0);
}

function idle(ms) {
  if (timer) clearTimeout(timer);
  timer = setTimeout(quit, ms);
  timer.unref();
}

function next() {
  if (active) return;
  active = waiting.shift() || null;
  if (!active) return idle(idleMs);
  if (timer) clearTimeout(timer);
  timer = null;
  active.sock.write(JSON.stringify(
    { ready: true, pid: process.pid, version: ts.version, cache: canCache, parsed: stats.parsed }) + "\n");
  pump();
}

function pump() {
  while (active && active.jobs.length) {
    const job = active.jobs.shift();
    if (job.idle !== undefined) { idleMs = Number(job.idle) * 1000; continue; }
    active.sock.write(JSON.stringify(run(job)) + "\n");
  }
}

const server = net.createServer((sock) => {
  const conn = { sock, jobs: [], buffer: "" };
  sock.setEncoding("utf8");
  sock.on("error", () => {});
  sock.on("data", (chunk) => {
    conn.buffer += chunk;
    let nl;
    while ((nl = conn.buffer.indexOf("\n")) >= 0) {
      const line = conn.buffer.slice(0, nl);
      conn.buffer = conn.buffer.slice(nl + 1);
      if (!line) continue;
      let job;
      try { job = JSON.parse(line); } catch (e) { sock.destroy(); return; }
      if (job.stop) quit();
      conn.jobs.push(job);
    }
    if (active === conn) pump();
  });
  sock.on("close", () => {
    const i = waiting.indexOf(conn);
    if (i >= 0) waiting.splice(i, 1);
    if (active === conn) { active = null; next(); }
  });
  waiting.push(conn);
  next();
});
process.umask(0o077);
server.listen(SOCKET, () => {
  listening = fs.statSync(SOCKET).ino;
  idle(Math.max(idleMs, 60000)); // until the build that started it connects
  fs.writeSync(ANSWERS, "listening\n");
  fs.closeSync(ANSWERS);
});
server.on("error", () => process.exit(1));
