"""The warm tsc runner against real TypeScript: a generated TypeScript monorepo built through warm
workers gives byte-identical dist/ files, the same task hashes, the same failure log for a type error
and the same answer for a bad project path as real ``tsc`` processes (``--no-warm-tsc``); commands it
does not understand run as usual.

TypeScript comes from the machine (``tsc`` on PATH, installed by .ci/run next to pnpm and yarn) and is
linked into the fixture's node_modules: nothing is downloaded at test time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stageflow.build import warmtsc

from .conftest import git

TSC = shutil.which("tsc")
TS_PACKAGE = Path(os.path.realpath(TSC)).parent.parent if TSC else None
needs_typescript = pytest.mark.skipif(
    TS_PACKAGE is None or not (TS_PACKAGE / "lib" / "typescript.js").is_file(),
    reason="needs TypeScript (tsc on PATH; .ci/run installs it with npm install -g typescript@5)",
)

SOURCES = {
    "types": (
        "@t/types",
        [],
        "export interface Item { id: number; tags: string[] }\nexport const version = 1;\n",
    ),
    "utils": (
        "@t/utils",
        ["@t/types"],
        'import { Item, version } from "@t/types";\n'
        "export const byId = (items: Item[]): Map<number, Item> => new Map(items.map((i) => [i.id, i]));\n"
        "export const tagged = (items: Item[], t: string) => items.filter((i) => i.tags.includes(t));\n"
        "export const v = version + 1;\n",
    ),
    "app": (
        "@t/app",
        ["@t/types", "@t/utils"],
        'import { byId, tagged, v } from "@t/utils";\nimport type { Item } from "@t/types";\n'
        "const items: Item[] = [{ id: 1, tags: ['a'] }];\n"
        "export const found: Item | undefined = byId(items).get(1);\n"
        "export const count: number = tagged(items, 'a').length + v;\n"
        "export async function later(): Promise<string[]> {\n"
        "  return Object.keys(await Promise.resolve({ a: 1 }));\n}\n",
    ),
}


def _ts_monorepo(root: Path, build: str = "tsc -p tsconfig.json") -> Path:
    """packages/{types,utils,app} compiled by tsc, typescript linked from the machine's install."""
    root.mkdir(parents=True)
    manifest = {"name": "ts-root", "private": True, "workspaces": ["packages/*"]}
    (root / "package.json").write_text(json.dumps(manifest))
    (root / ".gitignore").write_text("node_modules/\ndist/\n.stageflow/\n")
    (root / "tsconfig.base.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2020",
                    "module": "commonjs",
                    "declaration": True,
                    "sourceMap": True,
                    "strict": True,
                    "skipLibCheck": True,
                }
            }
        )
    )
    modules = root / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / "@t").mkdir()
    (modules / "typescript").symlink_to(TS_PACKAGE)
    (modules / ".bin" / "tsc").symlink_to("../typescript/bin/tsc")
    for directory, (name, deps, source) in SOURCES.items():
        ws = root / "packages" / directory
        (ws / "src").mkdir(parents=True)
        manifest = {
            "name": name,
            "version": "1.0.0",
            "main": "dist/index.js",
            "types": "dist/index.d.ts",
            "scripts": {"build": build},
            "dependencies": {d: "*" for d in deps},
        }
        (ws / "package.json").write_text(json.dumps(manifest))
        (ws / "tsconfig.json").write_text(
            json.dumps(
                {
                    "extends": "../../tsconfig.base.json",
                    "compilerOptions": {"outDir": "dist", "rootDir": "src"},
                    "include": ["src"],
                }
            )
        )
        (ws / "src" / "index.ts").write_text(source)
        (modules / "@t" / directory).symlink_to(ws)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def _dists(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.glob("packages/*/dist/**/*"))
        if p.is_file()
    }


def _hashes(doc: dict) -> dict[str, str]:
    return {t["name"]: t["hash"] for t in doc["tasks"]}


def test_plain_tsc_commands_only():
    assert warmtsc.plain_tsc_args("tsc") == []
    assert warmtsc.plain_tsc_args("tsc -p tsconfig.build.json") == ["-p", "tsconfig.build.json"]
    assert warmtsc.plain_tsc_args("tsc  --project  src") == ["--project", "src"]
    for command in (
        "tsc -b",
        "tsc --watch",
        "tsc -p tsconfig.json --listEmittedFiles",
        "tsc && vite build",
        "tsc -p $CFG",
        "NODE_ENV=production tsc",
        "tsc -p=tsconfig.json",
        "tsc > out.txt",
        "npx tsc",
        "tsc -p",
        "tsc -p -b",
        "node_modules/.bin/tsc",
    ):
        assert warmtsc.plain_tsc_args(command) is None, command


def test_typescript_must_be_a_typescript_package(tmp_path: Path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "tsc").write_text("#!/bin/sh\necho not typescript\n")
    (fake / "tsc").chmod(0o755)
    assert warmtsc.typescript_for({"PATH": f"{fake}:{os.environ['PATH']}"}) is None


@needs_typescript
def test_warm_outputs_hashes_and_errors_equal_real_tsc(tmp_path: Path, cli_json, monkeypatch):
    root = _ts_monorepo(tmp_path / "ts")
    from stageflow.plugins import build_runners

    compiled: list[int] = []
    close = build_runners.ScriptRunner.close

    def counting_close(self):
        if self._warm is not None:
            compiled.append(self._warm.used)
        close(self)

    monkeypatch.setattr(build_runners.ScriptRunner, "close", counting_close)

    code, warm_doc, err = cli_json(str(root))
    assert code == 0, err
    assert warm_doc["built"] == ["@t/types", "@t/utils", "@t/app"]
    assert compiled == [3]  # all three compiled by warm workers
    warm = _dists(root)
    assert "packages/app/dist/index.d.ts" in warm and "packages/app/dist/index.js.map" in warm

    shutil.rmtree(root / ".stageflow")
    for dist in root.glob("packages/*/dist"):
        shutil.rmtree(dist)
    code, real_doc, err = cli_json(str(root), "--no-warm-tsc")
    assert code == 0, err
    assert compiled == [3]  # --no-warm-tsc: no worker was started
    assert _dists(root) == warm  # byte for byte
    assert _hashes(real_doc) == _hashes(warm_doc)  # the runner is not part of the task hash

    # a type error: the task fails with tsc's exit code and diagnostics, exactly as real tsc reports it
    (root / "packages/app/src/index.ts").write_text(
        (root / "packages/app/src/index.ts").read_text() + "export const bad: number = 'text';\n"
    )
    code, real_fail, _ = cli_json(str(root), "--no-warm-tsc")
    real_app = next(t for t in real_fail["tasks"] if t["name"] == "@t/app")
    real_out = _dists(root)
    code_warm, warm_fail, err = cli_json(str(root), "--force")
    warm_app = next(t for t in warm_fail["tasks"] if t["name"] == "@t/app")
    assert code == code_warm == 1 and warm_fail["failed"] == ["@t/app"]
    assert warm_app["reason"] == real_app["reason"] == "exit code 2"  # errors, outputs still emitted
    diagnostic = "src/index.ts(9,14): error TS2322: Type 'string' is not assignable to type 'number'."
    assert diagnostic in warm_app["log_tail"]
    assert warm_app["log_tail"] == real_app["log_tail"]
    assert "@t/app: src/index.ts(9,14): error TS2322" in err  # the log is shown
    assert _dists(root) == real_out
    assert compiled[-1] == 3


@needs_typescript
def test_bad_project_path_and_other_commands(tmp_path: Path, cli_json):
    root = _ts_monorepo(tmp_path / "ts", build="tsc -p missing.json")
    code, warm_doc, _ = cli_json(str(root), "--fail-fast")
    code_real, real_doc, _ = cli_json(str(root), "--fail-fast", "--no-warm-tsc")
    assert code == code_real == 1
    warm_fail, real_fail = warm_doc["tasks"][0], real_doc["tasks"][0]
    assert warm_fail["reason"] == real_fail["reason"] == "exit code 1"
    assert warm_fail["log_tail"] == real_fail["log_tail"]
    assert "error TS5058: The specified path does not exist: 'missing.json'." in warm_fail["log_tail"]

    # a command the warm runner does not take (an extra flag, a chain) runs as a normal process
    other = _ts_monorepo(tmp_path / "other", build="tsc -p tsconfig.json --listEmittedFiles && echo done")
    code, doc, err = cli_json(str(other))
    assert code == 0, err
    assert "TSFILE: " in err and "@t/app: done" in err
    assert (other / "packages/app/dist/index.js").is_file()


@needs_typescript
def test_config_switch_turns_it_off(tmp_path: Path, cli_json, monkeypatch):
    root = _ts_monorepo(tmp_path / "ts")
    (root / "stageflow.toml").write_text("[build]\nrunner_options = { warm_tsc = false }\n")
    started: list[object] = []
    monkeypatch.setattr(warmtsc.WarmTsc, "__init__", lambda self, *a: started.append(self))
    code, doc, err = cli_json(str(root))
    assert code == 0, err and doc["built"] == ["@t/types", "@t/utils", "@t/app"]
    assert started == []


def test_no_warm_tsc_reaches_the_prefect_flow_parameters(tmp_path: Path):
    """--no-warm-tsc with --prefect: the flow's parameter model carries it to the engine's options
    (and None, the config's choice, stays None)."""
    from stageflow.flows.selective_build import SelectiveBuildParams

    from stageflow.build.engine import BuildOptions

    off = SelectiveBuildParams.from_options(BuildOptions(repo=tmp_path, warm_tsc=False))
    assert off.warm_tsc is False and off.options().warm_tsc is False
    assert SelectiveBuildParams.model_validate_json(off.model_dump_json()).options().warm_tsc is False
    default = SelectiveBuildParams.from_options(BuildOptions(repo=tmp_path))
    assert default.options().warm_tsc is None


# ------------------------------------------------------------------ workers that outlive a build
STAGEFLOW = Path(sys.executable).parent / "stageflow"


@pytest.fixture(autouse=True)
def _stop_persisted_workers():
    """Whatever a test leaves running in its STAGEFLOW_HOME is stopped when it ends."""
    yield
    warmtsc.stop_workers()
    directory = warmtsc.socket_dir(create=False)
    if directory is not None:  # (under the temp dir when the test's home path is too long)
        shutil.rmtree(directory)


def _sockets() -> list[Path]:
    directory = warmtsc.socket_dir(create=False)
    return sorted(directory.glob("*.sock")) if directory else []


def _build(root: Path, *args: str, home: Path | None = None) -> tuple[int, dict]:
    """A build in its own process, as a user's next build would be."""
    env = dict(os.environ)
    if home is not None:
        env["STAGEFLOW_HOME"] = str(home)
    proc = subprocess.run(
        [str(STAGEFLOW), "build", str(root), "--json", "--logs", "none", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    return proc.returncode, json.loads(proc.stdout)


@needs_typescript
def test_persisted_workers_serve_the_next_build_and_never_a_stale_declaration(tmp_path: Path):
    root = _ts_monorepo(tmp_path / "ts")
    code, doc = _build(root)
    assert code == 0 and doc["built"] == ["@t/types", "@t/utils", "@t/app"]
    first = warmtsc.running_workers()
    assert first and set(first) == set(_sockets())  # alive and idle after the build's process ended
    inodes = {p: p.stat().st_ino for p in first}

    # the dependency's exported type changes: utils now exports a string, so app must fail
    types = root / "packages/types/src/index.ts"
    types.write_text(types.read_text().replace("version = 1", 'version = "1"'))
    code, warm = _build(root)
    assert warmtsc.running_workers() == first  # the same processes served it: none was spawned
    assert {p: p.stat().st_ino for p in first} == inodes
    warm_out = _dists(root)

    # the same change compiled by real tsc processes, in a home where no worker was ever started
    shutil.rmtree(root / ".stageflow")
    for dist in root.glob("packages/*/dist"):
        shutil.rmtree(dist)
    clean_home = tmp_path / "other-home"
    code_real, real = _build(root, "--no-warm-tsc", home=clean_home)
    assert not (clean_home / "tsc").exists()  # --no-warm-tsc never touches sockets
    assert code == code_real == 1
    assert warm["failed"] == real["failed"] == ["@t/app"]
    warm_app, real_app = (next(t for t in d["tasks"] if t["name"] == "@t/app") for d in (warm, real))
    assert "error TS2322: Type 'string' is not assignable to type 'number'." in warm_app["log_tail"]
    assert warm_app["log_tail"] == real_app["log_tail"]
    assert _dists(root) == warm_out  # utils' new declaration (v: string) emitted alike
    assert b"v: string" in warm_out["packages/utils/dist/index.d.ts"]

    assert warmtsc.stop_workers() == len(first)
    assert _sockets() == [] and warmtsc.running_workers() == {}


@needs_typescript
def test_second_build_reuses_workers_and_stop_workers_ends_them(tmp_path: Path, cli, cli_json, monkeypatch):
    root = _ts_monorepo(tmp_path / "ts")
    from stageflow.plugins import build_runners

    pools: list[warmtsc.WarmTsc] = []
    close = build_runners.ScriptRunner.close

    def recording_close(self):
        if self._warm is not None:
            pools.append(self._warm)
        close(self)

    monkeypatch.setattr(build_runners.ScriptRunner, "close", recording_close)
    code, _, err = cli_json(str(root))
    assert code == 0, err
    code, _, err = cli_json(str(root), "--force")
    assert code == 0, err
    first, second = pools
    assert first.used == second.used == 3
    assert first.spawned >= 1 and second.spawned == 0  # the second build connected, spawned nothing
    running = warmtsc.running_workers()
    assert second.pids <= set(running.values()) and len(running) == first.spawned

    code, _, err = cli("build", "--stop-workers")
    assert code == 0 and f"stopped {len(running)} warm tsc worker(s)" in err
    assert _sockets() == [] and warmtsc.running_workers() == {}


@needs_typescript
def test_persist_zero_leaves_no_worker(tmp_path: Path, cli_json):
    root = _ts_monorepo(tmp_path / "ts")
    (root / "stageflow.toml").write_text("[build]\nrunner_options = { warm_tsc_persist = 0 }\n")
    code, doc, err = cli_json(str(root))
    assert code == 0 and doc["built"] == ["@t/types", "@t/utils", "@t/app"], err
    assert _sockets() == [] and warmtsc.running_workers() == {}


def _bind(path: Path) -> socket.socket:
    """A socket file as private as a worker's (mode 0700), that nobody serves."""
    sock = socket.socket(socket.AF_UNIX)
    umask = os.umask(0o077)
    try:
        sock.bind(str(path))
    finally:
        os.umask(umask)
    return sock


@needs_typescript
def test_stale_and_foreign_sockets(monkeypatch):
    node = os.path.realpath(shutil.which("node"))
    where = (node, str(TS_PACKAGE), "0123456789abcdef")
    directory = warmtsc.socket_dir()
    assert directory is not None and directory.stat().st_mode & 0o777 == 0o700
    stale = directory / f"{where[2]}-0.sock"

    # a socket nobody listens on (a worker that was killed): removed, a fresh worker takes the slot
    _bind(stale).close()
    worker = warmtsc._open_slot(where, os.environ, 0)
    assert worker is not None and worker.fresh
    worker.release(0)
    assert not stale.exists()

    # a listener that never says hello: treated as stale
    monkeypatch.setattr(warmtsc, "HELLO_TIMEOUT_S", 0.2)
    mute = _bind(stale)
    mute.listen(1)
    try:
        worker = warmtsc._open_slot(where, os.environ, 0)
        assert worker is not None and worker.fresh
        worker.release(0)
    finally:
        mute.close()

    # loose permissions or another owner: never connected to, never removed, the build runs tsc itself
    loose = _bind(stale)
    loose.listen(1)
    try:
        stale.chmod(0o777)
        with pytest.raises(warmtsc.Unsafe):
            warmtsc._open_slot(where, os.environ, 0)
        assert stale.exists()
        if os.getuid() == 0:
            stale.chmod(0o700)
            os.chown(stale, 65534, -1)
            with pytest.raises(warmtsc.Unsafe):
                warmtsc._open_slot(where, os.environ, 0)
    finally:
        loose.close()
        stale.unlink()
    pool = warmtsc.WarmTsc(1)
    monkeypatch.setattr(warmtsc, "_open_slot", lambda *a: (_ for _ in ()).throw(warmtsc.Unsafe("x")))
    assert pool._take(where, os.environ) is None  # -> None: the command runs as usual

    directory.chmod(0o755)
    with pytest.raises(warmtsc.Unsafe):
        warmtsc.socket_dir()
    directory.chmod(0o700)


@needs_typescript
def test_cancelled_compile_kills_the_worker_and_the_next_build_starts_a_fresh_one(tmp_path: Path):
    from stageflow.build.model import ProcessTracker

    root = _ts_monorepo(tmp_path / "ts")
    env = dict(os.environ, PATH=f"{root / 'node_modules/.bin'}:{os.environ['PATH']}")
    types = root / "packages/types"
    cancelled = ProcessTracker()
    cancelled.cancel()  # fail-fast / Ctrl-C: the tracker kills the worker's process group
    pool = warmtsc.WarmTsc(1, persist=600)
    assert pool.run("tsc -p tsconfig.json", types, env, cancelled) == (143, "")
    pool.close()
    assert pool.spawned == 1 and pool.used == 0
    assert _sockets() == [] and warmtsc.running_workers() == {}  # killed, its socket removed

    pool = warmtsc.WarmTsc(1, persist=600)
    assert pool.run("tsc -p tsconfig.json", types, env, ProcessTracker()) == (0, "")
    pool.close()
    assert pool.spawned == 1 and len(warmtsc.running_workers()) == 1
    assert (types / "dist/index.d.ts").is_file()


@needs_typescript
def test_idle_workers_exit_on_their_own(tmp_path: Path):
    from stageflow.build.model import ProcessTracker

    root = _ts_monorepo(tmp_path / "ts")
    env = dict(os.environ, PATH=f"{root / 'node_modules/.bin'}:{os.environ['PATH']}")
    pool = warmtsc.WarmTsc(1, persist=0.1)
    assert pool.run("tsc -p tsconfig.json", root / "packages/types", env, ProcessTracker()) == (0, "")
    pool.close()
    deadline = time.monotonic() + 60  # (not a timing assertion: only how long to wait for the exit)
    while (_sockets() or warmtsc.running_workers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sockets() == [] and warmtsc.running_workers() == {}
