"""The ssh session a sync keeps open: the remote shell script it runs (the snapshot's reads, then a
small command loop for the lock and the state writes), its framing of file contents, and the
Python side that speaks that protocol."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from typing import IO

from stageflow.errors import JobFailed, Refused
from stageflow.sync.target.base import Target

#: Frames a file as "<byte count>\n<bytes>" ("-\n" when missing), reading it once into a variable.
_EMIT_FN = (
    'emit() { if [ -f "$1" ]; then v=$(cat -- "$1" 2>/dev/null; echo x); v=${v%x}; '
    'printf "%s\\n" "${#v}"; printf %s "$v"; else echo -; fi; }'
)
#: After the snapshot, the session reads commands on stdin until it closes: L (take the lock, then
#: send files read under it), W/A/R (write, append, remove one small state file), X (run a command
#: line, output discarded), U (release the lock). Each is answered by one line. Nothing here ever
#: reads the protocol's stdin except ``read``; every command runs with stdin from /dev/null.
_SESSION_LOOP = (
    "while IFS= read -r op && IFS= read -r rel && IFS= read -r text; do "
    'if [ -z "$here" ]; then echo err; continue; fi; case "$op" in '
    'L) set --; i=0; while [ "$i" -lt "$text" ]; do IFS= read -r f || exit 1; set -- "$@" "$f"; '
    "i=$((i+1)); done; "
    "if mkdir -p .stageflow 2>/dev/null && true 2>/dev/null >> .stageflow/lock; then "
    'exec 9>> .stageflow/lock; flock -w "$rel" 9 </dev/null; rc=$?; '
    'if [ "$rc" -eq 0 ]; then echo locked; for f in "$@"; do emit "$f"; done; '
    'elif [ "$rc" -eq 1 ]; then echo busy; else echo err; fi; else echo err; fi ;; '
    'W) printf "%s\\n" "$text" > "$rel.stageflow-tmp-held" && mv -f "$rel.stageflow-tmp-held" "$rel" '
    "</dev/null && echo ok || echo err ;; "
    'A) printf "%s\\n" "$text" >> "$rel" && echo ok || echo err ;; '
    'R) rm -f "$rel" </dev/null && echo ok || echo err ;; '
    'X) ( cd "./$rel" && eval "$text" ) </dev/null >/dev/null 2>&1; echo ok ;; '
    "U) exec 9>&-; echo ok ;; "
    "*) echo err ;; esac; done"
)
_MUX_TROUBLE = re.compile(r"mux_client|[Cc]ontrol ?[Ss]ocket|master", re.MULTILINE)


class _SessionEnded(Exception):
    """The remote side of a session closed early (ssh failed, or the script died)."""


class _Session:
    """One ssh session kept open for a whole sync: the snapshot's reads, then the lock and the state
    writes (see _SESSION_LOOP). Closing stdin ends it (and releases a lock it holds)."""

    def __init__(self, argv: list[str], target: Target):
        self.target = target
        target.control_bytes += len(argv[-1].encode("utf-8", "surrogateescape"))
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
            )
        except FileNotFoundError:
            self._err.close()
            raise JobFailed(f"ssh command '{argv[0]}' not found: install openssh-client") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def alive(self) -> bool:
        return self.proc.poll() is None

    def write(self, text: str) -> None:
        try:
            data = text.encode("utf-8", "surrogateescape")
            self.target.control_bytes += len(data)
            self.stdin.write(data)
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _SessionEnded from None

    def readline(self) -> str:
        line = self.stdout.readline()
        if not line.endswith(b"\n"):
            raise _SessionEnded
        return line.decode("utf-8", "replace").strip()

    def read_framed(self, count: int) -> list[str | None]:
        try:
            return _read_framed(self.stdout, count)
        except (ValueError, JobFailed):
            raise _SessionEnded from None

    def ops(self, ops: list[tuple[str, str, str]]) -> None:
        """Send W/A/R/X/U operations (one line each) and check every answer."""
        self.write("".join(f"{op}\n{rel}\n{text}\n" for op, rel, text in ops))
        for op, rel, _ in ops:
            try:
                answer = self.readline()
            except _SessionEnded:
                raise JobFailed(f"the ssh session to {self.target.spec} ended while writing {rel}") from None
            if answer != "ok":
                raise JobFailed(
                    f"writing {rel} on {self.target.spec} failed ({op}): check the target's permissions"
                )

    def quiet(self, command: str, cwd_rel: str = "") -> None:
        """Run a one-line shell command in ``cwd_rel`` (output discarded; failures ignored)."""
        self.ops([("X", cwd_rel, command)])

    def failure(self) -> tuple[int, str]:
        """Wait for the ended session; (exit status, stderr)."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode("utf-8", "replace")
        self._err.close()
        return rc, err

    def close(self) -> None:
        if self._err.closed:
            return
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()
        self._err.close()


def _parse_framed(out: bytes, count: int) -> list[str | None]:
    """Parse ``count`` items framed as "<byte count>\n<bytes>" or "-\n"."""
    return _parse_framed_prefix(out, count)[0]


def _parse_framed_prefix(out: bytes, count: int) -> tuple[list[str | None], int]:
    """As _parse_framed, also returning where the framed items end."""
    pos = 0
    result: list[str | None] = []
    for _ in range(count):
        end = out.index(b"\n", pos)
        head = out[pos:end].strip()
        if head == b"-":
            result.append(None)
            pos = end + 1
            continue
        size = int(head)
        result.append(out[end + 1 : end + 1 + size].decode("utf-8", "surrogateescape"))
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
        result.append(data.decode("utf-8", "surrogateescape"))  # checked by _utf8_files
    return result


def _utf8_files(spec: str, texts: dict[str, str | None]) -> dict[str, str | None]:
    """The remote files read, refused (exit 3, naming the file) when one is not UTF-8 text, as the
    local target refuses it (a framed read keeps undecodable bytes as surrogates until here)."""
    for rel, text in texts.items():
        if text is not None and re.search("[\udc80-\udcff]", text):
            raise Refused(
                f"{spec}: {rel} is not UTF-8 text: rewrite it (for the role marker: "
                f"`stageflow target init {spec} --role ROLE`)"
            )
    return texts
