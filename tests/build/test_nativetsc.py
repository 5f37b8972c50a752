"""The native TypeScript 7 compiler path (stageflow.build.nativetsc) against the real ``typescript@7``:
a generated monorepo built by stageflow (launcher skipped, ready workspaces batched into one ``tsc
-b``) gives dist/ files byte-identical to plain ``tsc`` per workspace (``--no-warm-tsc``: each one its
own ``tsc`` process through the node launcher), leaves no ``.tsbuildinfo`` plain tsc would not, keeps
incremental projects out of the batch, and a type error in a batched workspace gives plain tsc's
exit code and diagnostics for it alone.

TypeScript 7 comes from the machine: ``$STAGEFLOW_TS7`` or ~/.cache/stageflow-ts7 (``.ci/run``
installs it there with ``npm install -g --prefix``), linked into the fixture: nothing is downloaded
at test time.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from stageflow.build import nativetsc
from stageflow.build.model import ProcessTracker

from .conftest import git

_PREFIX = Path(os.environ.get("STAGEFLOW_TS7") or Path.home() / ".cache" / "stageflow-ts7")
TS7 = _PREFIX / "lib" / "node_modules" / "typescript"
needs_ts7 = pytest.mark.skipif(
    not (TS7 / "lib" / "getExePath.js").is_file() or shutil.which("node") is None,
    reason="needs TypeScript 7 (.ci/run: npm install -g --prefix ~/.cache/stageflow-ts7 typescript@7)",
)

BASE = {
    "compilerOptions": {
        "target": "ES2020",
        "module": "commonjs",
        "declaration": True,
        "sourceMap": True,
        "strict": True,
        "skipLibCheck": True,
    }
}
#: dir -> (name, deps, source, tsconfig)
PLAIN = {"extends": "../../tsconfig.base.json", "compilerOptions": {"outDir": "dist", "rootDir": "src"}}
SOURCES: dict[str, tuple[str, list[str], str, Any]] = {}  # filled below


def _src(deps: list[str], extra: str = "") -> str:
    imports = "".join(f'import * as d{i} from "{d}";\n' for i, d in enumerate(deps))
    uses = " + ".join(f"d{i}.version" for i in range(len(deps))) or "0"
    return (
        imports + f"export const version: number = 1 + {uses};\nexport interface R {{ id: number }}\n" + extra
    )


SOURCES.update(
    {
        "types": ("@t/types", [], _src([]), PLAIN),
        "utils": ("@t/utils", ["@t/types"], _src(["@t/types"]), PLAIN),
        # tsconfig with comments and a trailing comma, rootDir . (build mode's .tsbuildinfo lands in dist/)
        "a": (
            "@t/a",
            ["@t/utils"],
            _src(["@t/utils"], "export class A { m = new Map<string, R>(); }\n"),
            '// comment\n{\n  "extends": "../../tsconfig.base.json", /* block */\n'
            '  "compilerOptions": { "outDir": "dist", "rootDir": ".", },\n  "include": ["src"],\n}\n',
        ),
        "b": ("@t/b", ["@t/utils", "@t/types"], _src(["@t/utils", "@t/types"]), PLAIN),
        # incremental: never batched (its .tsbuildinfo is an output of plain tsc)
        "c": (
            "@t/c",
            ["@t/utils"],
            _src(["@t/utils"]),
            {**PLAIN, "compilerOptions": {**PLAIN["compilerOptions"], "incremental": True}},
        ),
        "d": (
            "@t/d",
            ["@t/utils"],
            _src(["@t/utils"], "export async function f(): Promise<number> { return 1; }\n"),
            PLAIN,
        ),
    }
)


def _monorepo(root: Path) -> Path:
    root.mkdir(parents=True)
    manifest = {"name": "ts7-root", "private": True, "workspaces": ["packages/*"]}
    (root / "package.json").write_text(json.dumps(manifest))
    (root / ".gitignore").write_text("node_modules/\ndist/\n.stageflow/\n*.tsbuildinfo\n")
    (root / "tsconfig.base.json").write_text(json.dumps(BASE))
    modules = root / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / "@t").mkdir()
    (modules / "typescript").symlink_to(TS7)
    (modules / ".bin" / "tsc").symlink_to("../typescript/bin/tsc")
    for directory, (name, deps, source, tsconfig) in SOURCES.items():
        ws = root / "packages" / directory
        (ws / "src").mkdir(parents=True)
        manifest = {
            "name": name,
            "version": "1.0.0",
            "types": "dist/index.d.ts",
            "scripts": {"build": "tsc -p tsconfig.json"},
            "dependencies": {d: "*" for d in deps},
        }
        (ws / "package.json").write_text(json.dumps(manifest))
        text = tsconfig if isinstance(tsconfig, str) else json.dumps({**tsconfig, "include": ["src"]})
        (ws / "tsconfig.json").write_text(text)
        (ws / "src" / "index.ts").write_text(source)
        (modules / "@t" / directory).symlink_to(ws)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def _outputs(root: Path) -> dict[str, bytes]:
    """Everything the builds wrote (dist/ and any .tsbuildinfo anywhere in the packages)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "packages").rglob("*"))
        if p.is_file() and ("/dist/" in p.as_posix() or p.suffix == ".tsbuildinfo")
    }


def _clean(root: Path) -> None:
    shutil.rmtree(root / ".stageflow", ignore_errors=True)
    for p in list((root / "packages").glob("*/dist")):
        shutil.rmtree(p)
    for p in (root / "packages").rglob("*.tsbuildinfo"):
        p.unlink()


@needs_ts7
def test_native_binary_found_and_batchable_configs(tmp_path: Path) -> None:
    root = _monorepo(tmp_path / "ts7")
    env = {"PATH": f"{root / 'node_modules/.bin'}:{os.environ['PATH']}"}
    exe = nativetsc.native_tsc_for(env)
    assert exe is not None and exe.endswith("/lib/tsc") and "typescript-linux" in exe
    pkg = root / "packages"
    assert nativetsc.batchable(pkg / "b/tsconfig.json") == pkg / "b/tsconfig.tsbuildinfo"
    assert nativetsc.batchable(pkg / "a/tsconfig.json") == pkg / "a/dist/tsconfig.tsbuildinfo"
    assert nativetsc.batchable(pkg / "c/tsconfig.json") is None  # incremental
    (pkg / "b/tsconfig.tsbuildinfo").write_text("{}")  # the user's own: never clobbered
    assert nativetsc.batchable(pkg / "b/tsconfig.json") is None
    refs = pkg / "d/tsconfig.json"
    refs.write_text(json.dumps({**PLAIN, "references": [{"path": "../utils"}]}))
    assert nativetsc.batchable(refs) is None


@needs_ts7
def test_outputs_equal_plain_tsc_and_ready_workspaces_share_one_process(
    tmp_path: Path, cli_json, monkeypatch
):
    root = _monorepo(tmp_path / "ts7")
    batches: list[list[int]] = []
    from stageflow.plugins import build_runners

    close = build_runners.ScriptRunner.close

    def recording_close(self):
        if self._native is not None:
            batches.append(list(self._native.batches))
        close(self)

    monkeypatch.setattr(build_runners.ScriptRunner, "close", recording_close)
    code, fast_doc, err = cli_json(str(root), "-j", "4")
    assert code == 0, err
    assert sorted(fast_doc["built"]) == sorted(n for n, *_ in SOURCES.values())
    assert batches and max(batches[-1]) >= 2, batches  # a, b, d start together after utils
    fast = _outputs(root)
    assert "packages/a/dist/src/index.js.map" in fast and "packages/c/tsconfig.tsbuildinfo" in fast
    assert not any(k.endswith(".tsbuildinfo") and "/c/" not in k for k in fast)

    _clean(root)
    code, plain_doc, err = cli_json(str(root), "-j", "4", "--no-warm-tsc")
    assert code == 0, err
    assert _outputs(root) == fast  # byte for byte, per workspace
    assert {t["name"]: t["hash"] for t in plain_doc["tasks"]} == {
        t["name"]: t["hash"] for t in fast_doc["tasks"]
    }

    # a type error in a batched workspace: plain tsc's exit code and diagnostics, for it alone
    bad = root / "packages/b/src/index.ts"
    bad.write_text(bad.read_text() + "export const bad: number = 'text';\n")
    _clean(root)
    code, plain_fail, _ = cli_json(str(root), "-j", "4", "--no-warm-tsc")
    plain_out = _outputs(root)
    _clean(root)
    code_fast, fast_fail, _ = cli_json(str(root), "-j", "4")
    assert code == code_fast == 1 and fast_fail["failed"] == plain_fail["failed"] == ["@t/b"]
    tasks = {t["name"]: t for t in fast_fail["tasks"]}
    plain_tasks = {t["name"]: t for t in plain_fail["tasks"]}
    assert tasks["@t/b"]["reason"] == plain_tasks["@t/b"]["reason"] == "exit code 2"
    assert "error TS2322" in tasks["@t/b"]["log_tail"]
    assert tasks["@t/b"]["log_tail"] == plain_tasks["@t/b"]["log_tail"]
    assert tasks["@t/a"]["status"] == plain_tasks["@t/a"]["status"] == "built"
    assert tasks["@t/a"].get("log_tail", "") == plain_tasks["@t/a"].get("log_tail", "") == ""
    assert _outputs(root) == plain_out


@needs_ts7
def test_concurrent_requests_become_one_batch(tmp_path: Path) -> None:
    root = _monorepo(tmp_path / "ts7")
    env = dict(os.environ, PATH=f"{root / 'node_modules/.bin'}:{os.environ['PATH']}")
    runner = nativetsc.NativeTsc(builders=2)
    tracker = ProcessTracker()
    for first in ("types", "utils"):
        assert runner.run("tsc -p tsconfig.json", root / "packages" / first, env, tracker) == (0, "")
    answers: dict[str, Any] = {}

    def one(name: str) -> None:
        answers[name] = runner.run("tsc -p tsconfig.json", root / "packages" / name, env, tracker)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == {"a": (0, ""), "b": (0, ""), "d": (0, "")}
    assert runner.batches[-1] == 3
    assert not list((root / "packages").rglob("*.tsbuildinfo"))
    assert runner.run("tsc --watch", root, env, tracker) is None  # not a plain compilation
