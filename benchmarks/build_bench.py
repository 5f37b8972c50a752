"""Selective-build benchmark (not a test): stageflow against ``npm run build --workspaces`` and
Turborepo on generated TypeScript monorepos, measured in the same run.

    .venv/bin/python benchmarks/build_bench.py [--sizes 8 50] [--reps 3] [--cold-reps 1] [--keep DIR]

Each fixture is an npm-workspaces repo shaped like the issue's O4O monorepo (``packages/*`` libraries
on two shared packages ``types`` and ``utils``, a "core library" with a handful of dependents,
``apps/*`` on top; see :func:`shape`) whose builds are real ``tsc -p`` runs. ``npm install``
fetches typescript and turbo from the npm registry into the fixture (turbo telemetry off). Scenarios:
cold full build, no-change rebuild, one core library changed, one app changed. Prints medians,
ratios and the rebuilt sets, plus a per-layer direct ``tsc`` floor (each topological level's tsc
runs in parallel with no tool around them) for the cold build, whether each rebuilt set equals
turbo's and the changed package plus its dependents, and a breakdown of the no-change time
(interpreter, console-script imports, the stdlib-only fast path alone, end to end).

Each size is measured once per TypeScript version (``--typescript``; default 5.9.3 and 7.0.2, the
native compiler, which stageflow runs without its node launcher and batches ready workspaces into
one ``tsc -b``: stageflow.build.nativetsc). stageflow's warm tsc workers (TypeScript 5) outlive a
build (``warm_tsc_persist``), so its changed-package columns are
a user's next build, on workers the runs before it left; column ``sf 1st build`` stops them before
each run (node start, TypeScript load and the lib.d.ts parse included) and ``sf no-warm`` runs every
``tsc`` as its own process. The benchmark uses a STAGEFLOW_HOME of its own and stops its workers at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGEFLOW = Path(sys.executable).with_name("stageflow")
CORES = len(os.sched_getaffinity(0))
ENV = dict(
    os.environ,
    TURBO_TELEMETRY_DISABLED="1",
    DO_NOT_TRACK="1",
    TURBO_NO_UPDATE_NOTIFIER="1",
    NEXT_TELEMETRY_DISABLED="1",
    STAGEFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
)


CORE_DIR = "packages/p02-core"
APP_DIR = "apps/app00"


def shape(n: int) -> dict[str, tuple[str, list[str]]]:
    """dir -> (name, deps), shaped like the issue's O4O monorepo (``apps/*`` on ``packages/*``): every
    workspace sits on the shared ``types``/``utils`` packages, and the "core library" (``core``, the
    one the core-library scenario edits, like O4O's ``auth`` or ``ui``) has a handful of dependents
    (one library and every eighth app), not all of them. Libraries are numbered so alphabetical order
    is topological (npm runs ``--workspaces`` in listing order, not dependency order)."""
    libs = max(4, n // 2)
    out: dict[str, tuple[str, list[str]]] = {
        "packages/p00-types": ("@bench/types", []),
        "packages/p01-utils": ("@bench/utils", ["@bench/types"]),
        CORE_DIR: ("@bench/core", ["@bench/types", "@bench/utils"]),
        "packages/p03-lib": ("@bench/lib03", ["@bench/core", "@bench/types"]),
    }
    mids: list[str] = []
    for i in range(4, libs):
        deps = {"@bench/types", "@bench/utils"} | ({mids[(i * 7) % len(mids)]} if mids else set())
        name = f"@bench/lib{i:02d}"
        out[f"packages/p{i:02d}-lib"] = (name, sorted(deps))
        mids.append(name)
    mids = mids or ["@bench/utils"]
    for j in range(n - libs):
        deps = {"@bench/utils", mids[j % len(mids)], mids[(j * 3 + 1) % len(mids)]}
        if j % 8 == 0:
            deps.add("@bench/core")
        out[f"apps/app{j:02d}"] = (f"@bench/app{j:02d}", sorted(deps))
    return out


def dependents_of(layout: dict[str, tuple[str, list[str]]], name: str) -> list[str]:
    """``name`` plus its transitive dependents: the set a change to it must rebuild."""
    found = {name}
    grew = True
    while grew:
        grew = False
        for pkg, deps in layout.values():
            if pkg not in found and found & set(deps):
                found.add(pkg)
                grew = True
    return sorted(found)


def ts_source(name: str, deps: list[str], lines: int = 150) -> str:
    ident = re.sub(r"\W", "_", name.split("/")[-1])
    imports = [f'import * as d{k} from "{d}";' for k, d in enumerate(deps)]
    uses = " + ".join(f"d{k}.version" for k in range(len(deps))) or "0"
    body = [f"export const version: number = 1 + {uses};"]
    for i in range(lines // 6):
        body.append(
            f"export interface Rec{i} {{ id: number; label: string; tags: string[]; "
            f"nested: {{ v: Rec{i}[] }} }}\n"
            f"export function f{i}(r: Rec{i}, k: number): Rec{i} {{ return {{ ...r, id: r.id + k, "
            f"tags: r.tags.map((t) => t + '{ident}{i}') }}; }}\n"
            f"export class C{i} {{ private items: Map<string, Rec{i}> = new Map(); add(r: Rec{i}) "
            f"{{ this.items.set(r.label, f{i}(r, {i})); return this; }} }}"
        )
    return "\n".join(imports + body) + "\n"


def generate(
    root: Path, n: int, deps_dir: Path, typescript: str = "5.9.3"
) -> dict[str, tuple[str, list[str]]]:
    layout = shape(n)
    root.mkdir(parents=True)
    (root / "package.json").write_text(
        json.dumps(
            {
                "name": "bench-root",
                "private": True,
                "packageManager": "npm@" + _out(["npm", "--version"]),
                "workspaces": ["packages/*", "apps/*"],
                "devDependencies": {
                    "typescript": typescript,
                    "turbo": _out([str(deps_dir / "node_modules/.bin/turbo"), "--version"]),
                },
            },
            indent=2,
        )
    )
    (root / ".gitignore").write_text("node_modules/\ndist/\n.turbo/\n.stageflow/\n")
    (root / "turbo.json").write_text(
        json.dumps(
            {
                "$schema": "https://turborepo.com/schema.json",
                "tasks": {"build": {"dependsOn": ["^build"], "outputs": ["dist/**"]}},
            }
        )
    )
    (root / "tsconfig.base.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2020",
                    "module": "commonjs",
                    "declaration": True,
                    "strict": True,
                    "skipLibCheck": True,
                    "esModuleInterop": True,
                }
            }
        )
    )
    for d, (name, deps) in layout.items():
        ws = root / d
        (ws / "src").mkdir(parents=True)
        (ws / "package.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "version": "1.0.0",
                    "main": "dist/index.js",
                    "types": "dist/index.d.ts",
                    "scripts": {"build": "tsc -p tsconfig.json"},
                    "dependencies": {x: "*" for x in deps},
                },
                indent=2,
            )
        )
        (ws / "tsconfig.json").write_text(
            json.dumps(
                {
                    "extends": "../../tsconfig.base.json",
                    "compilerOptions": {"outDir": "dist", "rootDir": "src"},
                    "include": ["src"],
                }
            )
        )
        (ws / "src" / "index.ts").write_text(ts_source(name, deps))
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline"],
        cwd=root,
        check=True,
        env=ENV,
        capture_output=True,
    )
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return layout


def _out(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV).stdout.strip()


def clean(root: Path, *, caches: bool) -> None:
    for dist in list(root.glob("packages/*/dist")) + list(root.glob("apps/*/dist")):
        shutil.rmtree(dist)
    if caches:
        for d in (root / ".stageflow", root / ".turbo", root / "node_modules/.cache/turbo"):
            shutil.rmtree(d, ignore_errors=True)
        for d in list(root.glob("*/*/.turbo")):
            shutil.rmtree(d, ignore_errors=True)


def timed(cmd: list[str], root: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def stop_workers() -> None:
    """End the warm tsc workers stageflow keeps alive between builds (in the benchmark's home)."""
    subprocess.run([str(STAGEFLOW), "build", "--stop-workers"], capture_output=True, env=ENV, check=True)


def run_tool(tool: str, root: Path) -> tuple[float, list[str]]:
    if tool.startswith("stageflow"):
        extra = ["--no-warm-tsc"] if tool == "stageflow-no-warm" else []
        if tool == "stageflow-fresh":
            stop_workers()  # (untimed) a first build: no worker persisted by an earlier one
        t, out = timed(
            [str(STAGEFLOW), "build", str(root), "--json", "--logs", "none", "-j", str(CORES), *extra], root
        )
        return t, sorted(json.loads(out)["built"])
    if tool == "turbo":
        t, out = timed(
            [
                str(root / "node_modules/.bin/turbo"),
                "run",
                "build",
                "--output-logs=hash-only",
                f"--concurrency={CORES}",
            ],
            root,
        )
        return t, sorted(set(re.findall(r"(@bench/[\w-]+):build: cache miss", out)))
    t, _ = timed(["npm", "run", "build", "--workspaces", "--if-present"], root)
    return t, ["(all)"]


def floor(root: Path, layout: dict[str, tuple[str, list[str]]], only: list[str] | None = None) -> float:
    """Direct tsc per topological level, each level in parallel (CORES at once): the no-tool floor
    (of the whole repo, or of the workspaces ``only``, whose other dependencies are already built)."""
    import graphlib

    by_name = {name: d for d, (name, _) in layout.items()}
    keep = set(only) if only is not None else set(by_name)
    sorter = graphlib.TopologicalSorter(
        {name: set(deps) & keep for _, (name, deps) in layout.items() if name in keep}
    )
    levels = []
    sorter.prepare()
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        levels.append(ready)
        sorter.done(*ready)
    tsc = str(root / "node_modules/.bin/tsc")
    start = time.perf_counter()
    with ThreadPoolExecutor(CORES) as pool:
        for level in levels:
            list(
                pool.map(
                    lambda n: subprocess.run([tsc, "-p", "tsconfig.json"], cwd=root / by_name[n], check=True),
                    level,
                )
            )
    return time.perf_counter() - start


def no_change_breakdown(root: Path, runs: int) -> dict[str, float]:
    """Where a no-change ``stageflow build`` spends its time: the interpreter, the normal path's CLI
    imports (what the fast path avoids), the stdlib-only fast path alone, and the whole command through
    the console script (``--json`` and the plain summary line); last, turbo's native binary (not the
    node_modules/.bin wrapper), whose cache replay rewrites outputs, so it runs after stageflow's."""
    py = sys.executable
    fast = (
        "import sys; from stageflow.fast import build as fastpath; "
        f"sys.exit(0 if fastpath.run([{str(root)!r}, '--json', '--logs', 'none']) else 3)"
    )
    cases = {
        "python -c pass (interpreter + site)": [py, "-c", "pass"],
        "python -c 'import stageflow.cli' (normal path's imports)": [py, "-c", "import stageflow.cli"],
        "fast path alone (stdlib imports + decision)": [py, "-c", fast],
        "stageflow build --json (end to end)": [
            str(STAGEFLOW),
            "build",
            str(root),
            "--json",
            "--logs",
            "none",
            "-j",
            str(CORES),
        ],
        "stageflow build (end to end, summary line)": [str(STAGEFLOW), "build", str(root)],
    }
    native = sorted(root.glob("node_modules/@turbo/*/bin/turbo")) + sorted(
        root.glob("node_modules/turbo-*/bin/turbo")
    )
    if native:
        cases["turbo native binary (no-change)"] = [
            str(native[0]),
            "run",
            "build",
            "--output-logs=hash-only",
            f"--concurrency={CORES}",
        ]
    out = {}
    for label, cmd in cases.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=root, capture_output=True, env=ENV)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(
                    f"{label}: exit {proc.returncode} (fast path not taken?)\n{proc.stderr[-2000:]!r}"
                )
        out[label] = statistics.median(times)
    return out


def bump(path: Path, counter: list[int]) -> None:
    counter[0] += 1
    with path.open("a") as fh:
        fh.write(f"export const bump{counter[0]} = {counter[0]};\n")


def bench(
    n: int, reps: int, cold_reps: int, deps_dir: Path, keep: Path | None, typescript: str = "5.9.3"
) -> None:
    base = keep or Path(tempfile.mkdtemp(prefix=f"stageflow-bench-{n}-"))
    root = base / f"mono{n}-ts{typescript}"
    shutil.rmtree(root, ignore_errors=True)
    layout = generate(root, n, deps_dir, typescript)
    counter = [0]
    core = root / CORE_DIR / "src/index.ts"
    app = root / APP_DIR / "src/index.ts"
    results: dict[str, dict[str, list[float]]] = {}
    sets: dict[tuple[str, str], list[str]] = {}

    def record(tool: str, scenario: str, t: float, built: list[str]) -> None:
        results.setdefault(scenario, {}).setdefault(tool, []).append(t)
        sets[(tool, scenario)] = built

    load_before = os.getloadavg()

    # stageflow: its warm tsc workers persist between builds (warm_tsc_persist), so each scenario
    # finds the workers of the runs before it, as a user's next build would; stageflow-fresh stops
    # them before each run (a first build: node start, TypeScript load, lib.d.ts parse)
    def changed_scenarios(tool: str) -> None:
        for scenario, path in (("core-lib-changed", core), ("app-changed", app)):
            for _ in range(reps):
                bump(path, counter)
                record(tool, scenario, *run_tool(tool, root))
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)

    for tool in ("npm", "turbo", "stageflow", "stageflow-fresh", "stageflow-no-warm"):
        if tool == "stageflow-fresh":
            changed_scenarios(tool)
            continue
        for _ in range(cold_reps):
            clean(root, caches=True)
            record(tool, "cold", *run_tool(tool, root))
        if tool == "npm":
            continue  # npm has no incremental mode: every scenario is its cold build
        for _ in range(reps):  # (stageflow-no-warm: the same fast path as stageflow; measured anyway)
            record(tool, "no-change", *run_tool(tool, root))
        if tool == "stageflow":
            breakdown = no_change_breakdown(root, max(reps, 7))
        changed_scenarios(tool)
    for scenario in ("no-change", "core-lib-changed", "app-changed"):
        results[scenario]["npm"] = results["cold"]["npm"]
    expected = {
        "core-lib-changed": dependents_of(layout, layout[CORE_DIR][0]),
        "app-changed": [layout[APP_DIR][0]],
    }
    stop_workers()
    core_floors = []
    for _ in range(reps):  # the rebuilt set alone, direct tsc per level: the incremental floor
        bump(core, counter)
        core_floors.append(floor(root, layout, expected["core-lib-changed"]))
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)
    floors = []
    for _ in range(cold_reps):  # measured last, on the same warm file-system cache the tools had
        clean(root, caches=True)
        floors.append(floor(root, layout))

    med = {s: {t: statistics.median(v) for t, v in tools.items()} for s, tools in results.items()}
    load_after = os.getloadavg()
    load = ", ".join(f"{x:.2f}" for x in load_before) + " -> " + ", ".join(f"{x:.2f}" for x in load_after)
    print(
        f"\n## {n} workspaces, TypeScript {typescript} ({CORES} cores; medians of {reps} runs, cold of "
        f"{cold_reps}; load {load})"
    )
    print(
        f"direct tsc per-layer floor: cold {statistics.median(floors):.2f}s, "
        f"core-lib-changed (its rebuilt set) {statistics.median(core_floors):.2f}s"
    )
    print(
        f"{'scenario':<18}{'stageflow':>11}{'turbo':>10}{'npm':>10}{'sf/turbo':>10}{'sf/npm':>9}{'sf/floor':>10}"
        f"{'sf 1st build':>14}{'sf no-warm':>12}"
    )
    for scenario in ("cold", "no-change", "core-lib-changed", "app-changed"):
        m = med[scenario]
        ratio_floor = {
            "cold": f"{m['stageflow'] / statistics.median(floors):.2f}",
            "core-lib-changed": f"{m['stageflow'] / statistics.median(core_floors):.2f}",
        }.get(scenario, "-")
        fresh = f"{m['stageflow-fresh']:.3f}s" if "stageflow-fresh" in m else "-"
        print(
            f"{scenario:<18}{m['stageflow']:>10.3f}s{m['turbo']:>9.3f}s{m['npm']:>9.3f}s"
            f"{m['stageflow'] / m['turbo']:>10.2f}{m['stageflow'] / m['npm']:>9.2f}{ratio_floor:>10}"
            f"{fresh:>14}{m['stageflow-no-warm']:>11.3f}s"
        )
    for scenario in ("core-lib-changed", "app-changed"):
        for other in ("stageflow-no-warm", "stageflow-fresh"):
            if sets[(other, scenario)] != sets[("stageflow", scenario)]:
                print(f"rebuilt ({scenario}) by {other} DIFFERS: {sets[(other, scenario)]}")
        sf, tb = sets[("stageflow", scenario)], sets[("turbo", scenario)]
        same = "same as turbo" if sf == tb else f"DIFFERS from turbo {tb}"
        exact = "= the changed package and its dependents" if sf == expected[scenario] else "UNEXPECTED"
        print(f"rebuilt ({scenario}): {len(sf)} workspaces, {same}, {exact}: {', '.join(sf)}")
    turbo_nc = med["no-change"]["turbo"]
    print(
        f"no-change breakdown (medians of {max(reps, 7)}; turbo through node_modules/.bin {turbo_nc:.3f}s):"
    )
    for label, seconds in breakdown.items():
        print(f"  {label:<58}{seconds:>8.3f}s {seconds / turbo_nc:>6.2f}x turbo")
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    # Subprocesses (the stageflow CLI) run as in a user's install: with bytecode caches written.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 50])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold-reps", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="Generate fixtures here and keep them.")
    parser.add_argument(
        "--typescript",
        nargs="+",
        default=["5.9.3", "7.0.2"],
        help="TypeScript versions, each measured in the same run (default: 5.9.3 and 7.0.2, the native "
        "compiler: what `npm i -D typescript` installs today)",
    )
    args = parser.parse_args()
    deps_dir = Path(tempfile.mkdtemp(prefix="stageflow-bench-deps-"))
    (deps_dir / "package.json").write_text('{"name": "bench-deps", "private": true}')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "typescript@5.9.3", "turbo@2"],
        cwd=deps_dir,
        check=True,
        env=ENV,
        capture_output=True,
    )
    print(
        f"stageflow {_out([str(STAGEFLOW), '--version'])}; turbo "
        f"{_out([str(deps_dir / 'node_modules/.bin/turbo'), '--version'])}; "
        f"npm {_out(['npm', '--version'])}; node {_out(['node', '--version'])}"
    )
    # a home of its own: the benchmark's warm tsc workers are neither the user's nor left running
    home = Path(tempfile.mkdtemp(prefix="sf-bench-home-"))
    ENV["STAGEFLOW_HOME"] = str(home)
    try:
        for n in args.sizes:
            for typescript in args.typescript:
                bench(n, args.reps, args.cold_reps, deps_dir, args.keep, typescript)
    finally:
        stop_workers()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(deps_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
