"""deploy-sync benchmark (not a test): change 10 files in a generated monorepo-like tree, then time,
alternating in the same run, `stageflow sync` end to end (a subprocess), the engine alone (in
process) and the baseline `rsync -a --delete --exclude-from` over the whole tree; then the same with
no change. Prints medians and ratios, bytes sent against changed bytes, and whether each target tree
is identical to rsync's.

    .venv/bin/python benchmarks/sync_bench.py --files 20000 --files 100000 [--repeats 7] [--ssh HOST]

``--ssh HOST`` also runs the ssh variant against HOST:/tmp/... (e.g. ``localhost`` with a key in
~/.ssh and sshd running; ``--ssh-command`` picks the ssh command line).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))
EXCLUDES = ["node_modules/", "dist/", ".git/", ".stageflow/"]


def generate(root: Path, files: int, seed: int = 7) -> list[Path]:
    """About half the files under excluded dirs (node_modules, .git, dist), the rest shipped."""
    rng = random.Random(seed)
    shipped: list[Path] = []
    per_dir = 50
    for i in range(files):
        kind = i % 6
        pkg = f"pkg{(i // per_dir) % 200:03d}"
        if kind == 0:
            path = root / "node_modules" / pkg / f"m{i}.js"
        elif kind == 1:
            path = root / ".git" / "objects" / f"{i % 256:02x}" / f"o{i}"
        elif kind == 2:
            path = root / "packages" / pkg / "dist" / f"d{i}.js"
        else:
            path = root / ("apps" if kind == 3 else "packages") / pkg / "src" / f"f{i}.ts"
            shipped.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(200, 2000)))
    (root / "stageflow.toml").write_text("")
    return shipped


def write_config(source: Path, targets: dict[str, str], ssh_command: str) -> None:
    body = ""
    for name, target in targets.items():
        body += f'[sync.environments.{name}]\nrole = "bench"\ntarget = "{target}"\n'
        body += f"exclude = {EXCLUDES!r}\n".replace("'", '"')
        if ":" in target:
            body += f'ssh_command = "{ssh_command}"\n'
    (source / "stageflow.toml").write_text(body)


def tree_digest(root: str, ssh: str | None) -> str:
    """sha256 over (path, content hash) of every file, .stageflow excluded; over ssh when remote."""
    script = (
        "cd {r} && find . -path ./.stageflow -prune -o -type f -print0 | LC_ALL=C sort -z | "
        "xargs -0 sha256sum | sha256sum"
    )
    if ":" in root:
        host, path = root.split(":", 1)
        out = subprocess.run([*ssh.split(), host, script.format(r=path)], capture_output=True, text=True)
    else:
        out = subprocess.run(["sh", "-c", script.format(r=root)], capture_output=True, text=True)
    return out.stdout.split()[0]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(files: int, repeats: int, ssh_host: str | None, ssh_command: str) -> None:
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.sync.engine import SyncRequest, init_target, sync

    work = Path(tempfile.mkdtemp(prefix=f"sync-bench-{files}-"))
    os.environ["STAGEFLOW_HOME"] = str(work / "home")
    src = work / "src"
    t0 = time.perf_counter()
    shipped = generate(src, files)
    print(
        f"\n== {files} files ({len(shipped)} shipped, rest excluded); generated in "
        f"{time.perf_counter() - t0:.1f} s; {work}"
    )
    variants = {"local": ""}
    if ssh_host:
        variants["ssh"] = f"{ssh_host}:"
    excl = work / "excludes"
    excl.write_text("\n".join(EXCLUDES) + "\n")
    plugins = get_plugin_manager()
    rng = random.Random(1)
    for variant, prefix in variants.items():
        targets = {"engine": f"{prefix}{work}/{variant}-engine", "cli": f"{prefix}{work}/{variant}-cli"}
        rsync_dest = f"{prefix}{work}/{variant}-rsync/"
        write_config(src, targets, ssh_command)
        for spec in targets.values():
            if not prefix:
                Path(spec).mkdir(parents=True)
            init_target(spec, "bench", ssh_command=ssh_command)
        rsync_argv = ["rsync", "-a", "--delete", f"--exclude-from={excl}", f"{src}/", rsync_dest]
        if prefix:
            rsync_argv[1:1] = ["-e", ssh_command]
        t_full_engine = timed(lambda: sync(SyncRequest(src, "engine"), plugins=plugins))
        subprocess.run(
            [STAGEFLOW, "sync", str(src), "--env", "cli", "--json"], check=True, capture_output=True
        )
        t_full_rsync = timed(partial(subprocess.run, rsync_argv, check=True))
        print(
            f"[{variant}] first full sync: engine {t_full_engine * 1000:.0f} ms, "
            f"rsync {t_full_rsync * 1000:.0f} ms"
        )

        samples: dict[str, list[float]] = {
            k: [] for k in ("cli", "engine", "rsync", "noop-cli", "noop-engine", "noop-rsync")
        }
        sent: list[tuple[int, int]] = []

        def change10() -> int:
            changed = 0
            for p in rng.sample(shipped, 10):
                data = rng.randbytes(rng.randint(200, 2000))
                p.write_bytes(data)
                changed += len(data)
            return changed

        for i in range(repeats):
            changed = change10()
            order = ["engine", "cli", "rsync"] if i % 2 == 0 else ["rsync", "cli", "engine"]
            for what in order:
                if what == "engine":
                    t = time.perf_counter()
                    result = sync(SyncRequest(src, "engine"), plugins=plugins)
                    samples["engine"].append(time.perf_counter() - t)
                    sent.append((result.bytes_sent, changed))
                elif what == "cli":
                    samples["cli"].append(
                        timed(
                            lambda: subprocess.run(
                                [STAGEFLOW, "sync", str(src), "--env", "cli"], check=True, capture_output=True
                            )
                        )
                    )
                else:
                    samples["rsync"].append(timed(partial(subprocess.run, rsync_argv, check=True)))
            for what in order:
                if what == "engine":
                    samples["noop-engine"].append(
                        timed(lambda: sync(SyncRequest(src, "engine"), plugins=plugins))
                    )
                elif what == "cli":
                    samples["noop-cli"].append(
                        timed(
                            lambda: subprocess.run(
                                [STAGEFLOW, "sync", str(src), "--env", "cli"], check=True, capture_output=True
                            )
                        )
                    )
                else:
                    samples["noop-rsync"].append(timed(partial(subprocess.run, rsync_argv, check=True)))
        med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        print(f"[{variant}] medians over {repeats} runs (10 files changed):")
        for k in ("cli", "engine", "rsync"):
            print(f"    {k:<7} {med[k]:8.1f} ms   rsync/{k} = {med['rsync'] / med[k]:.2f}x")
        print(f"[{variant}] medians, no change:")
        for k in ("noop-cli", "noop-engine", "noop-rsync"):
            print(f"    {k:<12} {med[k]:8.1f} ms   noop-rsync/{k} = {med['noop-rsync'] / med[k]:.2f}x")
        ratio = statistics.median(s / c for s, c in sent)
        print(f"[{variant}] bytes sent / changed bytes (engine, median): {ratio:.3f}")
        ref = tree_digest(rsync_dest.rstrip("/"), ssh_command)
        for name, spec in targets.items():
            same = tree_digest(spec, ssh_command) == ref
            print(f"[{variant}] {name} target tree identical to rsync's: {same}")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, action="append", help="tree size (repeatable; default 20000)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ssh", metavar="HOST", help="also benchmark HOST:/path over ssh")
    parser.add_argument("--ssh-command", default="ssh", help="ssh command line (default: ssh)")
    args = parser.parse_args()
    for files in args.files or [20000]:
        run(files, args.repeats, args.ssh, args.ssh_command)


if __name__ == "__main__":
    main()
