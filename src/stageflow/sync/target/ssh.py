"""``[user@]host:/path`` as a deploy target: small POSIX shell scripts over one multiplexed ssh
master, and one long session (see :mod:`stageflow.sync.target.session`) for the snapshot, the lock
and the state writes."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from stageflow.errors import JobFailed
from stageflow.sync.target.base import _REMOTE, STATE_DIR, Held, Snapshot, Target
from stageflow.sync.target.masters import DEFAULT_PERSIST, control_dir
from stageflow.sync.target.session import (
    _EMIT_FN,
    _MUX_TROUBLE,
    _SESSION_LOOP,
    _parse_framed,
    _Session,
    _SessionEnded,
    _utf8_files,
)


class SshTarget(Target):
    """``[user@]host:/path``: operations run as small POSIX shell scripts over one ssh master."""

    remote = True

    def __init__(
        self,
        spec: str,
        ssh_command: str = "ssh",
        ssh_options: list[str] | None = None,
        persist: float = DEFAULT_PERSIST,
    ):
        m = _REMOTE.match(spec)
        if not m:
            raise ValueError(spec)
        self.spec = spec
        self.host = m.group("host")
        self.root = m.group("path").rstrip("/") or "/"
        base = [*shlex.split(ssh_command), *(ssh_options or [])]
        directory = control_dir() if persist > 0 else None
        self._temp_dir: str | None = None
        if directory is not None:
            # One master per ssh command line and %C (local host, remote host, port, user): another
            # identity or option set never rides on this connection.
            import hashlib

            tag = hashlib.sha256("\0".join(base).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            self.control_path = f"{directory}/{tag}-%C"
            lifetime = [f"ControlPersist={max(1, round(persist))}s", "ServerAliveInterval=15"]
        else:
            self._temp_dir = tempfile.mkdtemp(prefix="stageflow-ssh-")
            self.control_path = f"{self._temp_dir}/cm-%C"
            lifetime = ["ControlPersist=60"]
        self.persistent = directory is not None
        self.ssh_argv = [*base, "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}"]
        for option in [*lifetime, "BatchMode=yes"]:
            self.ssh_argv += ["-o", option]
        self._session: _Session | None = None
        #: Bytes this target's sessions sent to the host (remote commands, the safety net's request,
        #: lock and state writes): the sync's control traffic, besides the transport's bytes.
        self.control_bytes = 0

    def __repr__(self) -> str:
        return f"SshTarget({self.spec!r})"

    @property
    def rsync_shell(self) -> str:
        return shlex.join(self.ssh_argv)

    def transport_dest(self, rel: str = "") -> str:
        return f"{self.host}:{self.join(rel)}"

    def _q(self, rel: str) -> str:
        return shlex.quote(self.join(rel))

    def sh(
        self, script: str, stdin: str | None = None, timeout: float | None = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode == 255:
            detail = (proc.stderr.strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        if check and proc.returncode not in (0, 44):
            raise JobFailed(
                f"command on {self.spec} failed (exit {proc.returncode}): "
                f"{(proc.stderr.strip().splitlines() or [''])[-1]}"
            )
        return proc

    def exists(self) -> bool:
        return self.sh(f"[ -d {self._q('')} ] || exit 44").returncode == 0

    def _emit_files(self, rels: list[str]) -> list[str]:
        # Each file as "<byte count>\n<bytes>", or "-\n" when missing; parsed exactly by _parse.
        return [
            f"if [ -f {self._q(r)} ]; then wc -c < {self._q(r)}; cat {self._q(r)}; else echo -; fi"
            for r in rels
        ]

    @staticmethod
    def _emit_output(command: str) -> str:
        # A command's output (trailing newlines stripped) in the same framing; "-" when it fails.
        return (
            f'if out=$({command} 2>/dev/null); then printf %s "$out" | wc -c; printf %s "$out"; '
            "else echo -; fi"
        )

    def _read_script(self, script: str, count: int) -> list[str | None]:
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        return _parse_framed(self._run_read(argv), count)

    def _run_read(self, argv: list[str]) -> bytes:
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after 300 s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode == 255:
            detail = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""]
            raise JobFailed(f"reading state on {self.spec} failed (exit {proc.returncode}): {lines[-1]}")
        return proc.stdout

    def read_command(self, script: str, stdin: bytes = b"") -> bytes:
        """The stdout (bytes) of a read-only shell script on the host (drift checks: ``find``,
        ``sha256sum``); exit status non-zero is a JobFailed naming the target."""
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise JobFailed(f"target {self.spec} unreachable: ssh timed out after 600 s") from None
        except FileNotFoundError:
            raise JobFailed(f"ssh command '{self.ssh_argv[0]}' not found: install openssh-client") from None
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [
                f"exit {proc.returncode}"
            ]
            what = "unreachable" if proc.returncode == 255 else f"failed (exit {proc.returncode})"
            raise JobFailed(f"reading files on {self.spec} {what}: {detail[-1]}")
        return proc.stdout

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        texts = self._read_script("; ".join(self._emit_files(rels)), len(rels))
        return _utf8_files(self.spec, dict(zip(rels, texts, strict=True)))

    def snapshot(self, files: list[str], env: list[str], links: list[str]) -> Snapshot:
        """Everything the safety net and a no-change sync read, in one ssh session and few remote
        processes: environment variables through shell builtins, links through ``readlink``, each
        file read once, whole, into a shell variable (so its length and bytes always agree). The
        session then stays open for :meth:`lock` and the state writes (see :class:`_Session`)."""
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(name)
        if self._session is not None:
            self._session.close()
            self._session = None
        session, items = self._open_session(files, env, links)
        self._session = session
        n_env, n_links = len(env), len(links)
        return Snapshot(
            self.spec,
            _utf8_files(self.spec, dict(zip(files, items[n_env + n_links :], strict=True))),
            dict(zip(env, items[:n_env], strict=True)),
            dict(zip(links, items[n_env : n_env + n_links], strict=True)),
            self.hostname,
        )

    def _open_session(
        self, files: list[str], env: list[str], links: list[str]
    ) -> tuple[_Session, list[str | None]]:
        parts = ["LC_ALL=C", "export LC_ALL", _EMIT_FN]
        for name in env:
            parts.append(
                f'if [ "${{{name}+x}}" = x ]; then v=${name}; printf "%s\\n" "${{#v}}"; printf %s "$v"; '
                "else echo -; fi"
            )
        parts += [self._emit_output(f"readlink {self._q(rel)}") for rel in links]
        parts.append(f"if cd {self._q('')} 2>/dev/null; then here=1; else here=; fi")
        if files:
            quoted = " ".join(shlex.quote(rel) for rel in files)
            parts.append(f'for f in {quoted}; do if [ -n "$here" ]; then emit "$f"; else echo -; fi; done')
        parts.append(_SESSION_LOOP)
        script = "; ".join(parts)
        count = len(env) + len(links) + len(files)
        for attempt in (1, 2):
            session = _Session([*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)], self)
            try:
                return session, session.read_framed(count)
            except _SessionEnded:
                rc, err = session.failure()
            if attempt == 1 and self.persistent and rc == 255 and _MUX_TROUBLE.search(err):
                # A master that died or hung behind its socket: stop it and connect afresh, once.
                subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True, timeout=30)
                continue
            break
        if rc == 255:
            detail = (err.strip().splitlines() or ["ssh exited 255"])[-1]
            raise JobFailed(f"target {self.spec} unreachable: {detail}: check the host, ssh_options and keys")
        detail = (err.strip().splitlines() or [f"exit {rc}"])[-1]
        raise JobFailed(f"reading state on {self.spec} failed (exit {rc}): {detail}")

    def write_many(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        # The largest text travels on stdin; the others (small: state, journal) inside the script.
        items = [(rel, text, True) for rel, text in (append or {}).items()]
        items += [(rel, text, False) for rel, text in files.items()]
        big = max(range(len(items)), key=lambda i: len(items[i][1])) if items else None
        steps = []
        for i, (rel, text, appending) in enumerate(items):
            source = "cat" if i == big else f"printf %s {shlex.quote(text)}"
            if appending:
                steps.append(f'mkdir -p "$(dirname {self._q(rel)})" && {source} >> {self._q(rel)}')
                continue
            tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
            steps.append(
                f'mkdir -p "$(dirname {self._q(rel)})" && {source} > {tmp} && mv -f {tmp} {self._q(rel)}'
            )
        steps += [f"rm -f {self._q(rel)}" for rel in remove]
        if steps:
            self.sh(" && ".join(steps), stdin=items[big][1] if big is not None else "")

    def append_text(self, rel: str, text: str) -> None:
        self.write_many({}, append={rel: text})

    def read_text(self, rel: str) -> str | None:
        proc = self.sh(f"if [ -f {self._q(rel)} ]; then cat {self._q(rel)}; else exit 44; fi")
        return None if proc.returncode == 44 else proc.stdout

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        path = self._q(rel)
        tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
        self.sh(
            f'mkdir -p "$(dirname {path})" && umask 077 && cat > {tmp} && chmod {mode:o} {tmp} '
            f"&& mv -f {tmp} {path}",
            stdin=text,
        )

    def remove(self, rel: str) -> None:
        self.sh(f"rm -f {self._q(rel)}")

    def env(self, name: str) -> str | None:
        proc = self.sh(f"printenv {shlex.quote(name)} || exit 44")
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def hostname(self) -> str:
        return self.sh("hostname").stdout.strip()

    def run(
        self,
        command: str,
        cwd_rel: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        inherit_env: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the deployed tree on the host (its login environment). Values in
        ``env`` travel on the session's stdin, never on a command line (``ps`` on either machine)."""
        if not env:
            return self.sh(f"cd {self._q(cwd_rel)} && {command}", timeout=timeout, check=False)
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"not an environment variable name: {name!r}")
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        script = f'cd {self._q(cwd_rel)} && eval "$(cat)" && {{ {command}\n}} </dev/null'
        return self.sh(script, stdin=exports, timeout=timeout, check=False)

    def run_quiet(self, command: str, cwd_rel: str = "") -> None:
        """Run a one-line shell command in ``cwd_rel``, output discarded and failures ignored: through
        the sync's open session when there is one (no further ssh session), else on its own."""
        session = self._session
        if session is not None and session.alive() and "\n" not in command:
            session.quiet(command, cwd_rel)
        else:
            self.run(f"{command} 2>/dev/null; true", cwd_rel=cwd_rel)

    def readlink(self, rel: str) -> str | None:
        proc = self.sh(f"readlink {self._q(rel)} || exit 44")
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def list_dir(self, rel: str) -> list[str]:
        proc = self.sh(f"[ -d {self._q(rel)} ] || exit 44; ls -1A {self._q(rel)}")
        return sorted(proc.stdout.splitlines()) if proc.returncode == 0 else []

    def is_dir(self, rel: str) -> bool:
        return self.sh(f"[ -d {self._q(rel)} ] && [ ! -L {self._q(rel)} ] || exit 44").returncode == 0

    def clone_tree(self, src_rel: str, dst_rel: str) -> None:
        dst = self._q(dst_rel)
        if src_rel:
            self.sh(f'mkdir -p "$(dirname {dst})" && cp -al {self._q(src_rel)} {dst}')
        else:
            self.sh(f"mkdir -p {dst}")

    def swap_symlink(self, rel: str, points_to: str) -> None:
        tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
        self.sh(f"rm -f {tmp} && ln -s {shlex.quote(points_to)} {tmp} && mv -Tf {tmp} {self._q(rel)}")

    def remove_tree(self, rel: str) -> None:
        if rel:
            self.sh(f"rm -rf {self._q(rel)}")

    @contextlib.contextmanager
    def lock(self, timeout: float, read: tuple[str, ...] = ()) -> Iterator[Held]:
        """Hold the target's ``flock`` for as long as the block runs, taken through the session the
        snapshot opened (or a new one): no further ssh session. The same session sends the files in
        ``read`` (read under the lock) and applies the small state writes of :meth:`Held.apply`."""
        if self._session is None or not self._session.alive():
            if self._session is not None:
                self._session.close()
            self._session = self._open_session([], [], [])[0]
        session = self._session
        try:
            session.write(f"L\n{timeout:g}\n{len(read)}\n" + "".join(f"{rel}\n" for rel in read))
            answer = session.readline()
        except _SessionEnded:
            rc, err = session.failure()
            self._session = None
            if rc == 255:
                raise JobFailed(
                    f"target {self.spec} unreachable: check the host, ssh_options and keys"
                ) from None
            raise JobFailed(
                f"cannot lock {self.spec}: the ssh session ended (exit {rc}): {err.strip()[-200:]}"
            ) from None
        if answer == "busy":
            raise JobFailed(
                f"target {self.spec} is locked by another sync (waited {timeout:g} s): "
                "retry when it finishes, or raise lock_timeout"
            )
        if answer != "locked":
            raise JobFailed(
                f"cannot lock {self.join(STATE_DIR + '/lock')} on {self.host}: check that the directory is "
                "writable by the ssh user and that flock (util-linux) is installed"
            )
        texts = dict(zip(read, session.read_framed(len(read)), strict=True))
        try:
            yield Held(self, texts, session.ops)
        except BaseException:
            session.close()  # mid-protocol: end the session, which releases the lock
            self._session = None
            raise
        try:
            session.ops([("U", "", "")])
        except JobFailed:  # the work under the lock is done; ending the session releases it anyway
            session.close()
            self._session = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._temp_dir is not None:
            subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True)
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
