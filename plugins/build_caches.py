"""Built-in build caches: ``local`` (a directory, default ``<repo>/.stageflow/cache``, one tar per
task hash, size-capped with least-recently-used eviction) and ``http`` (GET/PUT ``<url>/<hash>``, the
protocol of a plain object store or a tiny cache server).

Writes are atomic: an entry is written to a temporary file and renamed into place, so a reader
never sees a partial entry. A cache never decides what to build.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stageflow.hookspecs import hookimpl


class LocalCacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str = ".stageflow/cache"  # relative paths are resolved against the repository root
    max_size_mb: int = Field(default=2048, ge=1)


class LocalCache:
    """One ``<hash>.tar`` per entry; a hit refreshes the entry's mtime, which eviction orders by."""

    def __init__(self, config: LocalCacheConfig):
        self.dir = Path(config.dir).expanduser()
        self.max_bytes = config.max_size_mb * 1024 * 1024

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
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".tar")
        os.close(fd)
        try:
            pack(root, outputs, log, {"key": key}, Path(tmp))
            os.replace(tmp, self._entry(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict(keep=key)

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least recently used entries until the cache fits ``max_size_mb``."""
        entries = []
        for p in self.dir.glob("*.tar"):
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


class HttpCache:
    """``GET <url>/<hash>`` (200: the entry's tar, 404: miss) and ``PUT <url>/<hash>``."""

    def __init__(self, config: HttpCacheConfig):
        self.config = config
        self.base = config.url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.config.token_env, "") if self.config.token_env else ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _call(self, method: str, key: str, **kwargs: object):
        import httpx

        try:
            return httpx.request(
                method, f"{self.base}/{key}", headers=self._headers(), timeout=self.config.timeout_s, **kwargs
            )
        except httpx.HTTPError as exc:
            raise OSError(f"{method} {self.base}/{key[:12]}...: {type(exc).__name__}: {exc}") from None

    def contains(self, key: str) -> bool:
        return self._call("HEAD", key).status_code == 200

    def fetch(self, key: str, dest: Path) -> Path | None:
        response = self._call("GET", key)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise OSError(f"GET {self.base}/{key[:12]}...: HTTP {response.status_code}")
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(response.content)
        os.replace(tmp, dest)
        return dest

    def store(self, key: str, root: Path, outputs: Sequence[str], log: str) -> None:
        from stageflow.build.outputs import pack

        with tempfile.TemporaryDirectory(prefix="stageflow-put-") as tmpdir:
            archive = Path(tmpdir) / "entry.tar"
            pack(root, outputs, log, {"key": key}, archive)
            response = self._call("PUT", key, content=archive.read_bytes())
        if response.status_code not in (200, 201, 204):
            raise OSError(f"PUT {self.base}/{key[:12]}...: HTTP {response.status_code}")


@hookimpl
def register_build_caches(register):
    register(
        "local",
        LocalCache,
        config=LocalCacheConfig,
        description="Directory cache (default .stageflow/cache), LRU size cap, atomic writes",
    )
    register("http", HttpCache, config=HttpCacheConfig, description="Remote cache: GET/PUT <url>/<hash>")
