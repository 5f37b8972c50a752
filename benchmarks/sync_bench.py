"""deploy-sync benchmark (not a test): change 10 files in a generated monorepo-like tree (a real git
repository; node_modules/, .cache/ and dist/ git-ignored and excluded), then time, alternating in the
same run, `stageflow sync` end to end (a subprocess) with the default configuration (``cli``: no
``watchman`` setting, no watchman started by the benchmark; the warm sync server the first run left
answers from its inotify watch), the engine alone (in process) with the git accelerator and with the
whole-tree walk (``use_git=False``), and the baseline `rsync -a --delete --exclude-from` over the
whole tree; then the same with no change. Prints medians and ratios, the load average, the floors
(``git status``, and rsync with nothing to send), bytes sent against changed bytes, and whether each
target tree (files and directories) is identical to rsync's.

    .venv/bin/python benchmarks/sync_bench.py --files 20000 --files 100000 [--repeats 7] [--sshd]

``--watchman`` adds the ``watchman = true`` variant (the engine in process asking a watchman the
benchmark starts; needs watchman installed).

``--sshd`` starts a private sshd on 127.0.0.1 (a free port, a throwaway key, as tests/sync/test_ssh.py
does; needs /usr/sbin/sshd) and also runs the ssh variant; ``--ssh HOST`` uses an existing one
(``--ssh-command`` picks the ssh command line).

Over ssh every timed sync is warm: the first (untimed) sync leaves its master connection
(``ssh_persist``) and the later ones reuse it. The baseline ``rsync`` opens its own connection each
time, as a plain rsync does; ``rsync-warm`` is the same rsync over stageflow's warm master. The floors
printed with them: a fresh ssh connection, one session on the warm master (``ssh host true``: the
remote login shell's start-up is in it), and the accelerator's ``git status``.

Bytes: ``bytes_sent`` as the engine reports it: for the local transport the bytes of the files
copied; for rsync its "Total bytes sent" (everything rsync wrote to the wire: file list, per-file
checksums and attributes, the compressed data). The state writes (journal line, state, pending) go
through the safety net's ssh session and are not in it. "changed bytes" are the bytes of the new
contents of the 10 changed files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGEFLOW = str(Path(sys.executable).with_name("stageflow"))
EXCLUDES = ["node_modules/", "dist/", ".cache/", ".git/", ".stageflow/"]
GITIGNORE = "node_modules/\ndist/\n.cache/\n"


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


def source_text(rng: random.Random, size: int) -> bytes:
    """About ``size`` bytes of TypeScript-like lines (compresses about as real source does)."""
    out: list[str] = []
    n = 0
    while n < size:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 12)))
        line = f"export function {name}{rng.randint(0, 999)}(x: number): number {{ return x * "
        line += f"{rng.randint(1, 99999)} + {rng.randint(1, 99999)}; }}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def content(rng: random.Random, kind: str, old: bytes | None = None) -> bytes:
    """New file content: random bytes (incompressible, rewritten whole: the worst case for bytes on
    the wire), or source-like text where an edit rewrites 1-3 lines of the old text."""
    if kind == "random":
        return rng.randbytes(rng.randint(200, 2000))
    if old is None:
        return source_text(rng, rng.randint(200, 2000))
    lines = old.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        lines[rng.randrange(len(lines))] = source_text(rng, 60).rstrip(b"\n")
    return b"\n".join(lines)


def generate(root: Path, files: int, text: str = "text", seed: int = 7) -> list[Path]:
    """About half the files under excluded, git-ignored dirs (node_modules, .cache, dist), the rest
    shipped and committed (so .git holds about as many objects again)."""
    rng = random.Random(seed)
    shipped: list[Path] = []
    per_dir = 50
    for i in range(files):
        slot = i % 6
        pkg = f"pkg{(i // per_dir) % 200:03d}"
        if slot == 0:
            path = root / "node_modules" / pkg / f"m{i}.js"
        elif slot == 1:
            path = root / ".cache" / f"{i % 256:02x}" / f"o{i}"
        elif slot == 2:
            path = root / "packages" / pkg / "dist" / f"d{i}.js"
        else:
            path = root / ("apps" if slot == 3 else "packages") / pkg / "src" / f"f{i}.ts"
            shipped.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content(rng, text))
    (root / "stageflow.toml").write_text("")
    (root / ".gitignore").write_text(GITIGNORE)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "generated")
    return shipped


def write_config(source: Path, targets: dict[str, str], ssh_command: str, watched: set[str]) -> None:
    """One environment per target; those in ``watched`` use watchman (``watchman = true``), ``cli``
    has the default (no setting), the others never ask watchman (git, or the walk)."""
    body = ""
    for name, target in targets.items():
        body += f'[sync.environments.{name}]\nrole = "bench"\ntarget = "{target}"\n'
        if name != "cli":
            body += f"watchman = {'true' if name in watched else 'false'}\n"
        body += f"exclude = {EXCLUDES!r}\n".replace("'", '"')
        if ":" in target:
            body += f'ssh_command = "{ssh_command}"\n'
    (source / "stageflow.toml").write_text(body)


def tree_digest(root: str, ssh: str | None) -> str:
    """sha256 over (path, content hash) of every file and the list of directories (empty ones
    included), .stageflow excluded; over ssh when remote."""
    script = (
        "cd {r} && {{ find . -path ./.stageflow -prune -o -type f -print0 | LC_ALL=C sort -z | "
        "xargs -0 sha256sum; find . -path ./.stageflow -prune -o -type d -print | LC_ALL=C sort; }} | "
        "sha256sum"
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


def start_sshd(work: Path, user: str | None = None) -> tuple[subprocess.Popen[bytes], str, str]:
    """A private sshd on 127.0.0.1 with key auth (as the test fixture); returns (process, user@host,
    ssh command). ``user``: log in as that (existing) account instead of the current one."""
    import getpass
    import socket

    d = work / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if user:  # sshd reads the keys file as that account
        for path in (work, d):
            os.chmod(path, 0o755)
        os.chmod(d / "authorized_keys", 0o644)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nPidFile {d / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    ssh = (
        f"ssh -p {port} -i {d / 'client'} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR"
    )
    return proc, f"{user or getpass.getuser()}@127.0.0.1", ssh


def wait_for_sync_server(timeout: float = 30.0) -> bool:
    """Whether the warm sync server the first CLI run left (STAGEFLOW_SYNC_SERVER) listens."""
    from stageflow.fast import sync_server as server

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = server._socket_path(create=False)  # the CLI's key may differ (its sys.executable)
        if path is not None and any(path.parent.glob("*.sock")):
            return True
        time.sleep(0.1)
    return False


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def run(
    files: int,
    repeats: int,
    ssh_host: str | None,
    ssh_command: str,
    ssh_user: str | None = None,
    text: str = "text",
    use_watchman: bool = True,
) -> None:
    from stageflow.plugin_manager import get_plugin_manager
    from stageflow.sync.engine import SyncRequest, init_target, sync

    work = Path(tempfile.mkdtemp(prefix=f"sync-bench-{files}-"))
    if ssh_user:  # the ssh targets live under work/ and are written by that account
        import pwd

        account = pwd.getpwnam(ssh_user)
        os.chown(work, account.pw_uid, account.pw_gid)
        os.chmod(work, 0o755)
    os.environ["STAGEFLOW_HOME"] = str(work / "home")
    src = work / "src"
    t0 = time.perf_counter()
    shipped = generate(src, files, text)
    print(
        f"\n== {files} files, {text} content ({len(shipped)} shipped, rest excluded); generated and "
        f"committed in {time.perf_counter() - t0:.1f} s; {work}; load average {os.getloadavg()}"
    )
    variants = {"local": ""}
    if ssh_host:
        variants["ssh"] = f"{ssh_host}:"
    excl = work / "excludes"
    excl.write_text("\n".join(EXCLUDES) + "\n")
    plugins = get_plugin_manager()
    rng = random.Random(1)

    def bench_variant(variant: str, prefix: str) -> None:
        targets = {
            "engine": f"{prefix}{work}/{variant}-engine",
            "walk": f"{prefix}{work}/{variant}-walk",
            "cli": f"{prefix}{work}/{variant}-cli",
        }
        if use_watchman:
            targets["watchman"] = f"{prefix}{work}/{variant}-watchman"
        rsync_dest = f"{prefix}{work}/{variant}-rsync/"
        write_config(src, targets, ssh_command, {"watchman"} if use_watchman else set())
        for spec in targets.values():
            if not prefix:
                Path(spec).mkdir(parents=True)
            init_target(spec, "bench", ssh_command=ssh_command)
        rsync_argv = ["rsync", "-a", "--delete", f"--exclude-from={excl}", f"{src}/", rsync_dest]
        if prefix:
            rsync_argv[1:1] = ["-e", ssh_command]
        cli_argv = [STAGEFLOW, "sync", str(src), "--env", "cli"]

        def engine(use_git: bool = True, env: str = "engine") -> Any:
            return sync(SyncRequest(src, env, use_git=use_git), plugins=plugins)

        walk = partial(engine, False, "walk")
        watched = partial(engine, True, "watchman")
        warm_argv: list[str] = []
        if prefix:
            from stageflow.sync.target import SshTarget

            warm_argv = SshTarget(targets["engine"], ssh_command).ssh_argv
        rsync_warm_argv = ["rsync", "-a", "--delete", f"--exclude-from={excl}", "-e", shlex.join(warm_argv)]
        rsync_warm_argv += [f"{src}/", f"{prefix}{work}/{variant}-rsyncwarm/"]
        first = {
            **({"watchman": timed(watched)} if use_watchman else {}),
            "engine": timed(engine),
            "walk": timed(walk),
            "cli": timed(partial(subprocess.run, cli_argv, check=True, capture_output=True)),
            "rsync": timed(partial(subprocess.run, rsync_argv, check=True)),
        }
        if prefix:
            first["rsync-warm"] = timed(partial(subprocess.run, rsync_warm_argv, check=True))
        print(
            f"[{variant}] first full sync: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in first.items())
        )
        # A second, no-change round lets every local manifest settle (the first sync has no git baseline).
        engine(), walk()
        print(f"[{variant}] cli: warm sync server listening: {wait_for_sync_server()}")
        # The first served sync starts the server's watch (and uses git); later ones ask the watch.
        for _ in range(2):
            served = subprocess.run([*cli_argv, "--json"], check=True, capture_output=True, text=True)
        print(f"[{variant}] cli (default config) settled on: {json.loads(served.stdout)['accelerator']}")
        if use_watchman:
            watched()

        kinds: tuple[str, ...] = ("watchman",) if use_watchman else ()
        kinds += ("engine", "walk", "cli", "rsync") + (("rsync-warm",) if prefix else ())
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        samples.update({f"noop-{k}": [] for k in kinds})
        #: (bytes_sent, control_bytes, changed bytes) per changed round, per engine variant
        sent: dict[str, list[tuple[int, int, int]]] = {"engine": []}
        if use_watchman:
            sent["watchman"] = []
        modes: dict[str, set[str]] = {"engine": set(), "walk": set(), "watchman": set(), "cli": set()}
        loads = [os.getloadavg()[0]]

        def change10() -> int:
            changed = 0
            for p in rng.sample(shipped, 10):
                data = content(rng, text, p.read_bytes())
                p.write_bytes(data)
                changed += len(data)
            return changed

        def one(what: str, noop: bool, changed: int) -> None:
            key = f"noop-{what}" if noop else what
            t = time.perf_counter()
            if what in sent:  # the engine, with git or with watchman
                result = engine() if what == "engine" else watched()
                modes[what].add(result.accelerator)
                if not noop:
                    sent[what].append((result.bytes_sent, result.control_bytes, changed))
            elif what == "walk":
                modes["walk"].add(walk().accelerator)
            elif what == "cli":
                out = subprocess.run([*cli_argv, "--json"], check=True, capture_output=True, text=True)
                modes["cli"].add(json.loads(out.stdout)["accelerator"])
            elif what == "rsync-warm":
                subprocess.run(rsync_warm_argv, check=True)
            else:
                subprocess.run(rsync_argv, check=True)
            samples[key].append(time.perf_counter() - t)

        floors: dict[str, list[float]] = {"git status": []}
        if prefix:
            host = prefix.rstrip(":")
            floors["ssh connection (cold)"] = []
            floors["ssh session (warm master)"] = []
        git_argv = [
            "git",
            "-C",
            str(src),
            "-c",
            "core.untrackedCache=true",
            "-c",
            "status.showUntrackedFiles=all",
        ]
        git_argv += ["status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"]

        def measure_floors() -> None:
            floors["git status"].append(timed(partial(subprocess.run, git_argv, capture_output=True)))
            if prefix:
                cold = [*shlex.split(ssh_command), "-o", "ControlPath=none", host, "true"]
                floors["ssh connection (cold)"].append(timed(partial(subprocess.run, cold, check=True)))
                warm = [*warm_argv, host, "true"]
                floors["ssh session (warm master)"].append(timed(partial(subprocess.run, warm, check=True)))

        for i in range(repeats):
            measure_floors()
            changed = change10()
            order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
            for what in order:
                one(what, False, changed)
            for what in order:
                one(what, True, 0)
            loads.append(os.getloadavg()[0])
        med = {k: median_ms(v) for k, v in samples.items()}
        warm_note = " (ssh: warm master)" if prefix else ""
        floors["rsync, nothing to send"] = samples["noop-rsync"]
        print(
            f"[{variant}] floors (medians): "
            + ", ".join(f"{name} {median_ms(v):.0f} ms" for name, v in floors.items())
        )
        print(
            f"[{variant}] medians over {repeats} runs{warm_note}, 10 files changed (accelerators: "
            + "; ".join(f"{k} {'/'.join(sorted(v))}" for k, v in modes.items() if v)
            + "; cli = the default configuration, served); "
            f"1-min load average during the run {min(loads):.1f}..{max(loads):.1f}:"
        )
        for k in kinds:
            print(f"    {k:<7} {med[k]:8.1f} ms   rsync/{k} = {med['rsync'] / med[k]:.2f}x")
        print(f"[{variant}] medians, no change:")
        for k in kinds:
            n = f"noop-{k}"
            print(f"    {n:<12} {med[n]:8.1f} ms   noop-rsync/{n} = {med['noop-rsync'] / med[n]:.2f}x")
        how = "rsync's Total bytes sent (wire)" if prefix else "bytes of the files copied"
        changed_med = statistics.median(c for _, _, c in sent["engine"])
        for label, rows in sent.items():
            ratio = statistics.median(s / c for s, _, c in rows)
            line = f"[{variant}] bytes sent / changed bytes ({label}, median): {ratio:.3f}"
            if prefix:
                total = statistics.median((s + k) / c for s, k, c in rows)
                line += f"; with the control traffic (safety net, lock, state writes): {total:.3f}"
            print(line)
        print(f"    (bytes sent = {how}; changed bytes median {changed_med:.0f} over 10 files)")
        ref = tree_digest(rsync_dest.rstrip("/"), ssh_command)
        if prefix:
            targets["rsync-warm"] = f"{prefix}{work}/{variant}-rsyncwarm"
        for name, spec in targets.items():
            same = tree_digest(spec, ssh_command) == ref
            print(f"[{variant}] {name} target tree identical to rsync's: {same}")

    from stageflow.sync.target import close_masters

    try:
        for variant, prefix in variants.items():
            bench_variant(variant, prefix)
    finally:
        close_masters(ssh_command)  # the masters the syncs left (ssh_persist)
        from stageflow.fast.sync_server import stop_servers

        stop_servers()  # the warm sync server the CLI runs left
        if use_watchman:
            subprocess.run(["watchman", "watch-del", os.path.realpath(src)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    # Subprocesses (the stageflow CLI) run as in a user's install: with bytecode caches written.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, action="append", help="tree size (repeatable; default 20000)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--content",
        choices=["text", "random"],
        action="append",
        help="file contents (repeatable; default text): source-like text, where a change rewrites a "
        "few lines, or random bytes rewritten whole (incompressible: the worst case for bytes sent)",
    )
    parser.add_argument(
        "--watchman", action="store_true", help="add the watchman = true variant (starts a watchman)"
    )
    parser.add_argument("--ssh", metavar="HOST", help="also benchmark HOST:/path over ssh")
    parser.add_argument("--ssh-command", default="ssh", help="ssh command line (default: ssh)")
    parser.add_argument("--sshd", action="store_true", help="start a private sshd and bench over ssh")
    parser.add_argument(
        "--ssh-user",
        help="with --sshd: log in as this existing account (a deploy user whose shell start-up is not "
        "the current user's; each remote command pays it)",
    )
    args = parser.parse_args()
    sshd = None
    if args.sshd:
        sshd, args.ssh, args.ssh_command = start_sshd(
            Path(tempfile.mkdtemp(prefix="sync-bench-sshd-")), args.ssh_user
        )
    try:
        use_watchman = args.watchman and shutil.which("watchman") is not None
        if args.watchman and not use_watchman:
            print("watchman is not installed: the watchman variant is left out (apt-get install watchman)")
        for text in args.content or ["text"]:
            for files in args.files or [20000]:
                user = args.ssh_user if args.sshd else None
                run(files, args.repeats, args.ssh, args.ssh_command, user, text, use_watchman)
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)


if __name__ == "__main__":
    main()
