"""Deploy targets: a local directory or ``[user@]host:/path`` reached over ssh (one multiplexed
connection per sync). Every filesystem operation the engine needs on a target lives here, so the
engine, releases and hooks are the same code for both.

A target object never decides *whether* to write (the safety net and the engine do); it never logs
file contents, and never follows symlinks out of its root when removing.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from stageflow.errors import JobFailed

STATE_DIR = ".stageflow"
_REMOTE = re.compile(r"^(?P<host>(?:[^@/:\s]+@)?[^@/:\s]+):(?P<path>.*)$")


def is_remote(spec: str) -> bool:
    return bool(_REMOTE.match(spec)) and not os.path.exists(spec)


class Target:
    """Common interface; see :class:`LocalTarget` and :class:`SshTarget`."""

    spec: str
    root: str
    remote: bool = False

    def join(self, rel: str) -> str:
        return self.root.rstrip("/") + "/" + rel if rel else self.root

    def transport_dest(self, rel: str = "") -> str:
        raise NotImplementedError

    def read_text(self, rel: str) -> str | None:
        raise NotImplementedError

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    def remove(self, rel: str) -> None:
        raise NotImplementedError

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        """Several small files at once (one round trip on a remote target)."""
        return {rel: self.read_text(rel) for rel in rels}

    def write_many(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        """Append ``append`` texts (each to the end of its file), then write ``files`` atomically
        (each by rename), in order, then remove ``remove``. One round trip on a remote target."""
        for rel, text in (append or {}).items():
            self.append_text(rel, text)
        for rel, text in files.items():
            self.write_text(rel, text)
        for rel in remove:
            self.remove(rel)

    def append_text(self, rel: str, text: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class Snapshot:
    """Read-only answers about a target gathered at one moment (one round trip over ssh): files,
    environment variables, symlinks, hostname. Used by the safety net and the no-change path."""

    def __init__(
        self,
        spec: str,
        files: dict[str, str | None],
        env: dict[str, str | None],
        links: dict[str, str | None],
        host: str | Callable[[], str],
    ):
        self.spec = spec
        self.files, self._env, self.links, self._host = files, env, links, host

    def read_text(self, rel: str) -> str | None:
        return self.files[rel]

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        return {rel: self.files[rel] for rel in rels}

    def env(self, name: str) -> str | None:
        return self._env[name]

    def hostname(self) -> str:
        """Asked only when no marker, variable or .env line names a role (then one more trip)."""
        if callable(self._host):
            self._host = self._host()
        return self._host

    def readlink(self, rel: str) -> str | None:
        return self.links[rel]


#: Texts up to this size (one line each) go through the held lock session; larger ones use write_many.
HELD_LINE_LIMIT = 64 * 1024


class Held:
    """The target's lock, held. ``texts`` are the files read once it was taken; :meth:`apply` writes
    small one-line state files (pending journal, state, manifest journal line) through the same
    session over ssh instead of opening another one."""

    def __init__(
        self,
        target: LocalTarget | SshTarget,
        texts: dict[str, str | None],
        send: Callable[[list[tuple[str, str, str]]], None] | None = None,
    ):
        self.target, self.texts, self._send = target, texts, send

    def apply(
        self, files: dict[str, str], remove: tuple[str, ...] = (), append: dict[str, str] | None = None
    ) -> None:
        """As :meth:`Target.write_many`: appends, then atomic writes, then removals, in order."""
        ops = [("A", rel, text) for rel, text in (append or {}).items()]
        ops += [("W", rel, text) for rel, text in files.items()]
        small = all(
            len(text) <= HELD_LINE_LIMIT
            and "\n" not in text.rstrip("\n")
            and (op == "A") == text.endswith("\n")
            for op, _, text in ops
        )
        if self._send is None or not small:
            self.target.write_many(files, remove=remove, append=append)
            return
        self._send(
            [(op, rel, text.rstrip("\n")) for op, rel, text in ops] + [("R", rel, "") for rel in remove]
        )


class LocalTarget(Target):
    def __init__(self, spec: str):
        self.spec = spec
        self.root = os.path.abspath(os.path.expanduser(spec))

    def __repr__(self) -> str:
        return f"LocalTarget({self.root!r})"

    def transport_dest(self, rel: str = "") -> str:
        return self.join(rel)

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def read_text(self, rel: str) -> str | None:
        try:
            return Path(self.join(rel)).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_text(self, rel: str, text: str, mode: int = 0o644) -> None:
        path = self.join(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".stageflow-tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.join(rel))

    def append_text(self, rel: str, text: str) -> None:
        path = self.join(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def env(self, name: str) -> str | None:
        return os.environ.get(name)

    def hostname(self) -> str:
        return socket.gethostname()

    def snapshot(self, files: list[str], env: list[str], links: list[str]) -> Snapshot:
        return Snapshot(
            self.spec,
            {rel: self.read_text(rel) for rel in files},
            {name: self.env(name) for name in env},
            {rel: self.readlink(rel) for rel in links},
            self.hostname,
        )

    def run(
        self, command: str, cwd_rel: str = "", env: dict[str, str] | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            shell=True,
            cwd=self.join(cwd_rel),
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def readlink(self, rel: str) -> str | None:
        try:
            return os.readlink(self.join(rel))
        except (FileNotFoundError, OSError):
            return None

    def list_dir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.join(rel)))
        except FileNotFoundError:
            return []

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self.join(rel)) and not os.path.islink(self.join(rel))

    def clone_tree(self, src_rel: str, dst_rel: str) -> None:
        dst = self.join(dst_rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if src_rel:
            proc = subprocess.run(["cp", "-al", self.join(src_rel), dst], capture_output=True, text=True)
            if proc.returncode != 0:
                raise JobFailed(
                    f"cannot hard-link {src_rel} into {dst_rel} on {self.root}: {proc.stderr.strip()}"
                )
        else:
            os.makedirs(dst)

    def swap_symlink(self, rel: str, points_to: str) -> None:
        tmp = self.join(f"{rel}.stageflow-tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(points_to, tmp)
        os.replace(tmp, self.join(rel))

    def remove_tree(self, rel: str) -> None:
        shutil.rmtree(self.join(rel), ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, timeout: float, read: tuple[str, ...] = ()) -> Iterator[Held]:
        """Hold the target's lock; the Held it yields has the files in ``read``, read under it."""
        os.makedirs(self.join(STATE_DIR), exist_ok=True)
        fd = os.open(self.join(f"{STATE_DIR}/lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise JobFailed(
                            f"target {self.root} is locked by another sync (waited {timeout:g} s): "
                            "retry when it finishes, or raise lock_timeout"
                        ) from None
                    time.sleep(0.05)
            yield Held(self, self.read_many(list(read)))
        finally:
            os.close(fd)


class SshTarget(Target):
    """``[user@]host:/path``: operations run as small POSIX shell scripts over one ssh master."""

    remote = True

    def __init__(self, spec: str, ssh_command: str = "ssh", ssh_options: list[str] | None = None):
        m = _REMOTE.match(spec)
        if not m:
            raise ValueError(spec)
        self.spec = spec
        self.host = m.group("host")
        self.root = m.group("path").rstrip("/") or "/"
        self._control_dir = tempfile.mkdtemp(prefix="stageflow-ssh-")
        self.ssh_argv = [
            *shlex.split(ssh_command),
            *(ssh_options or []),
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._control_dir}/cm-%C",
            "-o",
            "ControlPersist=60",
            "-o",
            "BatchMode=yes",
        ]

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
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""]
            raise JobFailed(f"reading state on {self.spec} failed (exit {proc.returncode}): {detail[-1]}")
        return proc.stdout

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        return dict(zip(rels, self._read_script("; ".join(self._emit_files(rels)), len(rels)), strict=True))

    def snapshot(self, files: list[str], env: list[str], links: list[str]) -> Snapshot:
        """Everything the safety net and a no-change sync read, in one ssh round trip and few remote
        processes: environment variables through shell builtins, links through ``readlink``, then
        every existing file in one ``tar -h`` stream (each file read once, whole, by one process)."""
        parts = ["LC_ALL=C", "export LC_ALL"]
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(name)
            parts.append(
                f'if [ "${{{name}+x}}" = x ]; then v=${name}; printf "%s\\n" "${{#v}}"; printf %s "$v"; '
                "else echo -; fi"
            )
        parts += [self._emit_output(f"readlink {self._q(rel)}") for rel in links]
        quoted = " ".join(shlex.quote(rel) for rel in files)
        parts.append(
            f'cd {self._q("")} 2>/dev/null && {{ set --; for f in {quoted}; do [ -f "$f" ] && '
            'set -- "$@" "$f"; done; [ $# -eq 0 ] || tar -chf - -- "$@" 2>/dev/null; }; true'
        )
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote("; ".join(parts))]
        out = self._run_read(argv)
        head, pos = _parse_framed_prefix(out, len(env) + len(links))
        contents: dict[str, str | None] = dict.fromkeys(files)
        if pos < len(out):
            with tarfile.open(fileobj=io.BytesIO(out[pos:]), mode="r:") as archive:
                for member in archive:
                    data = archive.extractfile(member) if member.isfile() else None
                    if data is not None and member.name in contents:
                        contents[member.name] = data.read().decode("utf-8")
        return Snapshot(
            self.spec,
            contents,
            dict(zip(env, head[: len(env)], strict=True)),
            dict(zip(links, head[len(env) :], strict=True)),
            self.hostname,
        )

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
        self, command: str, cwd_rel: str = "", env: dict[str, str] | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        return self.sh(f"cd {self._q(cwd_rel)} && {exports}{command}", timeout=timeout, check=False)

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

    #: Runs under the remote flock after the reads: applies (op, path, line) triples sent on stdin,
    #: answering "ok" or "err" to each, until stdin closes (which releases the lock).
    _HELD_LOOP = (
        'cd "$1" || exit 1; while IFS= read -r op && IFS= read -r rel && IFS= read -r text; do case "$op" in '
        'W) printf "%s\\n" "$text" > "$rel.stageflow-tmp-held" && mv -f "$rel.stageflow-tmp-held" "$rel" '
        "&& echo ok || echo err ;; "
        'A) printf "%s\\n" "$text" >> "$rel" && echo ok || echo err ;; '
        'R) rm -f "$rel" && echo ok || echo err ;; *) echo err ;; esac; done'
    )

    @contextlib.contextmanager
    def lock(self, timeout: float, read: tuple[str, ...] = ()) -> Iterator[Held]:
        """Hold a remote ``flock`` for as long as the block runs. The same session first sends the
        files in ``read`` (read under the lock), then applies the small state writes of
        :meth:`Held.apply`, so the lock, the state reads and the state writes cost one session."""
        state = self._q(STATE_DIR)
        lockfile = self._q(f"{STATE_DIR}/lock")
        after = "; ".join(["echo locked", *self._emit_files(list(read)), self._HELD_LOOP])
        script = (
            f"mkdir -p {state} && exec flock -w {timeout:g} {lockfile} sh -c {shlex.quote(after)} "
            f"held {self._q('')}"
        )
        proc = subprocess.Popen(
            [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdin is not None
        stdin, stdout = proc.stdin, proc.stdout
        line = stdout.readline()
        if line.strip() != b"locked":
            stdin.close()
            rc = proc.wait()
            if rc == 255:
                raise JobFailed(f"target {self.spec} unreachable: check the host, ssh_options and keys")
            raise JobFailed(
                f"target {self.spec} is locked by another sync (waited {timeout:g} s): "
                "retry when it finishes, or raise lock_timeout"
            )

        def send(ops: list[tuple[str, str, str]]) -> None:
            payload = "".join(f"{op}\n{rel}\n{text}\n" for op, rel, text in ops)
            stdin.write(payload.encode("utf-8", "surrogateescape"))
            stdin.flush()
            for op, rel, _ in ops:
                answer = stdout.readline().strip()
                if answer != b"ok":
                    raise JobFailed(
                        f"writing {rel} on {self.spec} failed ({op}): check the target's permissions"
                    )

        try:
            yield Held(self, dict(zip(read, _read_framed(stdout, len(read)), strict=True)), send)
        finally:
            stdin.close()
            proc.wait(timeout=30)

    def close(self) -> None:
        subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True)
        shutil.rmtree(self._control_dir, ignore_errors=True)


def _parse_framed(out: bytes, count: int) -> list[str | None]:
    """Parse ``count`` items framed as "<byte count>\n<bytes>" or "-\n"."""
    return _parse_framed_prefix(out, count)[0]


def _parse_framed_prefix(out: bytes, count: int) -> tuple[list[str | None], int]:
    """As _parse_framed, also returning where the framed items end."""
    pos, result = 0, []
    for _ in range(count):
        end = out.index(b"\n", pos)
        head = out[pos:end].strip()
        if head == b"-":
            result.append(None)
            pos = end + 1
            continue
        size = int(head)
        result.append(out[end + 1 : end + 1 + size].decode("utf-8"))
        pos = end + 1 + size
    return result, pos


def _read_framed(stream: IO[bytes], count: int) -> list[str | None]:
    """The same framing, read from a stream that stays open (the lock session)."""
    result: list[str | None] = []
    for _ in range(count):
        head = stream.readline().strip()
        if head == b"-":
            result.append(None)
            continue
        size = int(head)
        data = b""
        while len(data) < size:
            chunk = stream.read(size - len(data))
            if not chunk:
                raise JobFailed("the target's lock session ended early")
            data += chunk
        result.append(data.decode("utf-8"))
    return result


def open_target(
    spec: str, ssh_command: str = "ssh", ssh_options: list[str] | None = None
) -> LocalTarget | SshTarget:
    if is_remote(spec):
        return SshTarget(spec, ssh_command, ssh_options)
    return LocalTarget(spec)
