"""What every deploy target shares: the state directory's name, the ``[user@]host:/path`` form, the
:class:`Target` interface, the one-moment :class:`Snapshot` and the :class:`Held` lock."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

STATE_DIR = ".stageflow"
_REMOTE = re.compile(r"^(?P<host>(?:[^@/:\s]+@)?[^@/:\s]+):(?P<path>.*)$")


def is_remote(spec: str) -> bool:
    return bool(_REMOTE.match(spec)) and not os.path.exists(spec)


class Target:
    """Common interface; see :class:`LocalTarget` and :class:`SshTarget`."""

    spec: str
    root: str
    remote: bool = False
    #: Bytes of the sync's own traffic to a remote host (SshTarget counts them); 0 locally.
    control_bytes: int = 0

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
        target: Target,
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
