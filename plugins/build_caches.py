"""Built-in build caches: ``local`` (a directory, default ``<repo>/.stageflow/cache``, one tar per
task hash, size-capped with least-recently-used eviction) and ``http`` (GET/PUT ``<url>/<hash>``, the
protocol of a plain object store or a tiny cache server).

Writes are atomic: an entry is written to a temporary file and renamed into place, so a reader
never sees a partial entry; a temporary file a killed writer left is removed by the next store. Every
entry carries a content digest (checked on restore by :mod:`stageflow.build.outputs`); with
``signature_key_env`` set, entries are signed with HMAC-SHA256 and an unsigned or wrongly signed
entry is a miss with a warning (like Turborepo's ``TURBO_REMOTE_CACHE_SIGNATURE_KEY``). The http
cache streams entries to and from disk and refuses one larger than ``max_entry_mb``. A cache never
decides what to build.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.api import ConfigError, Register, hookimpl

if TYPE_CHECKING:
    import httpx

_TMP_PREFIX = ".tmp-"
#: A temporary entry older than this whose writer cannot be identified is a leftover.
_STALE_TMP_S = 6 * 3600


def _signature_key(env_name: str | None, backend: str) -> bytes | None:
    if not env_name:
        return None
    value = os.environ.get(env_name, "")
    if not value:
        raise ConfigError(
            f"[build] cache_options.signature_key_env names {env_name}, which is not set: export it "
            f"(the shared {backend} cache's signing key) or remove signature_key_env"
        )
    return value.encode("utf-8", "surrogateescape")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(directory: Path) -> list[str]:
    """Remove ``.tmp-<pid>-*`` entries whose writer is gone (killed mid-write); return their names."""
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(directory) if n.startswith(_TMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid = name[len(_TMP_PREFIX) :].split("-", 1)[0]
        path = directory / name
        if pid.isdigit():
            stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > _STALE_TMP_S
            except OSError:
                continue
        if stale:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(name)
    return removed


class LocalCacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str = ".stageflow/cache"  # relative paths are resolved against the repository root
    max_size_mb: int = Field(default=2048, ge=1)
    #: Name of an env var holding an HMAC key: entries are signed and checked (a shared directory).
    signature_key_env: str | None = Field(
        default=None, description="env var NAME holding the HMAC key entries are signed with"
    )


class LocalCache:
    """One ``<hash>.tar`` per entry; a hit refreshes the entry's mtime, which eviction orders by."""

    def __init__(self, config: LocalCacheConfig):
        self.dir = Path(config.dir).expanduser()
        self.max_bytes = config.max_size_mb * 1024 * 1024
        self.signature_key = _signature_key(config.signature_key_env, "local")

    def _entry(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"cache key must be alphanumeric: {key!r}")
        return self.dir / f"{key}.tar"

    def contains(self, key: str) -> bool:
        return self._entry(key).is_file()

    def fetch(self, key: str, dest: Path) -> Path | None:
        entry = self._entry(key)
        try:
            os.utime(entry)
        except FileNotFoundError:
            return None
        except PermissionError:
            pass  # a read-only shared cache still serves hits
        return entry

    def discard(self, key: str) -> None:
        try:
            self._entry(key).unlink(missing_ok=True)
        except OSError:
            pass

    def store(self, key: str, root: Path, outputs: Sequence[str], log: str) -> None:
        from stageflow.build.outputs import pack

        self.dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.dir)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix=".tar")
        os.close(fd)
        try:
            pack(root, outputs, log, {"key": key}, Path(tmp), signature_key=self.signature_key)
            os.replace(tmp, self._entry(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict(keep=key)

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least recently used entries until the cache fits ``max_size_mb``."""
        entries = []
        for p in self.dir.glob("*.tar"):
            if p.name.startswith(_TMP_PREFIX):
                continue  # another writer's entry in progress (or a leftover, see clean_stale_temps)
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p.stem == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            removed.append(p.stem)
        return removed


class HttpCacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    token_env: str | None = None  # name of an env var holding a bearer token (never the token itself)
    timeout_s: float = Field(default=30.0, gt=0)
    #: Name of an env var holding the HMAC key entries are signed with (e.g.
    #: TURBO_REMOTE_CACHE_SIGNATURE_KEY); a wrongly signed or unsigned entry is then a miss.
    signature_key_env: str | None = Field(
        default=None, description="env var NAME holding the HMAC key entries are signed with"
    )
    #: An entry larger than this is refused (a miss with a warning), never buffered.
    max_entry_mb: int = Field(default=2048, ge=1, description="largest entry fetched or stored, in MiB")


class HttpCache:
    """``GET <url>/<hash>`` (200: the entry's tar, 404: miss) and ``PUT <url>/<hash>``."""

    def __init__(self, config: HttpCacheConfig):
        self.config = config
        self.base = config.url.rstrip("/")
        self.signature_key = _signature_key(config.signature_key_env, "http")
        self.max_bytes = config.max_entry_mb * 1024 * 1024

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.config.token_env, "") if self.config.token_env else ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _call(
        self, method: str, key: str, extra_headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        import httpx

        try:
            return httpx.request(
                method,
                f"{self.base}/{key}",
                headers={**self._headers(), **(extra_headers or {})},
                timeout=self.config.timeout_s,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise OSError(f"{method} {self.base}/{key[:12]}...: {type(exc).__name__}: {exc}") from None

    def contains(self, key: str) -> bool:
        return self._call("HEAD", key).status_code == 200

    def fetch(self, key: str, dest: Path) -> Path | None:
        """Stream the entry to ``dest`` (never held in memory); None on 404."""
        import httpx

        where = f"{self.base}/{key[:12]}..."
        tmp = dest.with_name(dest.name + ".part")
        try:
            with httpx.stream(
                "GET", f"{self.base}/{key}", headers=self._headers(), timeout=self.config.timeout_s
            ) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise OSError(f"GET {where}: HTTP {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise OSError(f"GET {where}: entry of {int(declared)} bytes is over max_entry_mb")
                size = 0
                with open(tmp, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise OSError(
                                f"GET {where}: entry is over max_entry_mb ({self.config.max_entry_mb})"
                            )
                        out.write(chunk)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise OSError(f"GET {where}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
        return dest

    def store(self, key: str, root: Path, outputs: Sequence[str], log: str) -> None:
        from stageflow.build.outputs import pack

        with tempfile.TemporaryDirectory(prefix="stageflow-put-") as tmpdir:
            archive = Path(tmpdir) / "entry.tar"
            pack(root, outputs, log, {"key": key}, archive, signature_key=self.signature_key)
            size = archive.stat().st_size
            headers = {"Content-Length": str(size)}
            response = self._call("PUT", key, content=_chunks(archive), extra_headers=headers)
        if response.status_code not in (200, 201, 204):
            raise OSError(f"PUT {self.base}/{key[:12]}...: HTTP {response.status_code}")


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


@hookimpl
def register_build_caches(register: Register) -> None:
    register(
        "local",
        LocalCache,
        config=LocalCacheConfig,
        description="Directory cache (default .stageflow/cache), LRU size cap, atomic writes",
    )
    register(
        "http",
        HttpCache,
        config=HttpCacheConfig,
        description="Remote cache: GET/PUT <url>/<hash>, streamed, optionally HMAC-signed",
    )
