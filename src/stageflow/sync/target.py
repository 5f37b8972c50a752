"""Deploy targets: a local directory or ``[user@]host:/path`` reached over ssh (one multiplexed
connection per sync). Every filesystem operation the engine needs on a target lives here, so the
engine, releases and hooks are the same code for both.

A target object never decides *whether* to write (the safety net and the engine do); it never logs
file contents, and never follows symlinks out of its root when removing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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

    def write_many(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        """Write files atomically (each by rename), in order, then remove ``remove``."""
        for rel, text in files.items():
            self.write_text(rel, text)
        for rel in remove:
            self.remove(rel)

    def close(self) -> None:
        """Release connections."""


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

    def env(self, name: str) -> str | None:
        return os.environ.get(name)

    def hostname(self) -> str:
        return socket.gethostname()

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
    def lock(self, timeout: float) -> Iterator[None]:
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
            yield
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

    def read_many(self, rels: list[str]) -> dict[str, str | None]:
        # Each file as "<byte count>\n<bytes>", or "-\n" when missing; parsed exactly on this side.
        parts = [
            f"if [ -f {self._q(r)} ]; then wc -c < {self._q(r)}; cat {self._q(r)}; else echo -; fi"
            for r in rels
        ]
        argv = [*self.ssh_argv, self.host, "sh -c " + shlex.quote("; ".join(parts))]
        proc = subprocess.run(argv, capture_output=True, timeout=300)
        if proc.returncode == 255:
            raise JobFailed(f"target {self.spec} unreachable: check the host, ssh_options and keys")
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""]
            raise JobFailed(f"reading state on {self.spec} failed (exit {proc.returncode}): {detail[-1]}")
        out, pos, result = proc.stdout, 0, {}
        for rel in rels:
            end = out.index(b"\n", pos)
            head = out[pos:end].strip()
            if head == b"-":
                result[rel], pos = None, end + 1
                continue
            size = int(head)
            result[rel] = out[end + 1 : end + 1 + size].decode("utf-8")
            pos = end + 1 + size
        return result

    def write_many(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        # The largest file travels on stdin; the others (small: state, journal) inside the script.
        items = list(files.items())
        big = max(items, key=lambda kv: len(kv[1]))[0] if items else None
        steps = []
        for rel, text in items:
            tmp = shlex.quote(self.join(rel) + f".stageflow-tmp-{os.getpid()}")
            source = "cat" if rel == big else f"printf %s {shlex.quote(text)}"
            steps.append(
                f'mkdir -p "$(dirname {self._q(rel)})" && {source} > {tmp} && mv -f {tmp} {self._q(rel)}'
            )
        steps += [f"rm -f {self._q(rel)}" for rel in remove]
        if steps:
            self.sh(" && ".join(steps), stdin=files[big] if big else "")

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

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        state = self._q(STATE_DIR)
        lockfile = self._q(f"{STATE_DIR}/lock")
        script = (
            f"mkdir -p {state} && exec flock -w {timeout:g} {lockfile} "
            "sh -c 'echo locked; exec cat >/dev/null'"
        )
        proc = subprocess.Popen(
            [*self.ssh_argv, self.host, "sh -c " + shlex.quote(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if line.strip() != "locked":
            proc.stdin.close()
            rc = proc.wait()
            if rc == 255:
                raise JobFailed(f"target {self.spec} unreachable: check the host, ssh_options and keys")
            raise JobFailed(
                f"target {self.spec} is locked by another sync (waited {timeout:g} s): "
                "retry when it finishes, or raise lock_timeout"
            )
        try:
            yield
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)

    def close(self) -> None:
        subprocess.run([*self.ssh_argv, "-O", "exit", self.host], capture_output=True)
        shutil.rmtree(self._control_dir, ignore_errors=True)


def open_target(
    spec: str, ssh_command: str = "ssh", ssh_options: list[str] | None = None
) -> LocalTarget | SshTarget:
    if is_remote(spec):
        return SshTarget(spec, ssh_command, ssh_options)
    return LocalTarget(spec)
