"""Fetching direct media URLs with httpx: streamed to disk, a size cap checked before and during the
transfer, resumable (an interrupted ``.part`` file continues with a Range request), retried with
backoff on 5xx/429 and connection errors.

Never reads a whole file into memory and never leaves a partial file under the final name.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from stageflow.errors import BadInput, JobFailed

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class TooLarge(BadInput):
    """The remote file is over the configured size cap."""


@dataclass(frozen=True)
class FetchOptions:
    max_bytes: int = 2 * 1024**3
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 1.0
    chunk_bytes: int = 1 << 20


def local_name(url: str) -> str:
    """A stable file name for ``url``: a hash of it plus the URL path's suffix."""
    suffix = Path(urlparse(url).path).suffix.lower()[:8]
    return hashlib.sha256(url.encode()).hexdigest()[:20] + suffix


def download(url: str, dest_dir: Path, options: FetchOptions | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` (resuming a previous partial download) and return the path."""
    import httpx

    opts = options or FetchOptions()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / local_name(url)
    if final.is_file():
        return final
    part = final.with_name(final.name + ".part")
    attempt = 0
    while True:
        try:
            _transfer(httpx, url, part, opts)
            part.replace(final)
            return final
        except _Retryable as exc:
            attempt += 1
            if attempt > opts.retries:
                raise JobFailed(f"{url}: {exc} (after {opts.retries} retries)") from None
            time.sleep(opts.backoff_s * 2 ** (attempt - 1))


class _Retryable(Exception):
    pass


def _transfer(httpx, url: str, part: Path, opts: FetchOptions) -> None:  # noqa: ANN001 - lazy module
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=opts.timeout_s, follow_redirects=True) as resp:
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code == 416 and have:  # already complete
                return
            if resp.status_code >= 400:
                raise JobFailed(f"{url}: HTTP {resp.status_code}")
            resumed = resp.status_code == 206
            if not resumed:
                have = 0
            length = resp.headers.get("content-length")
            total = have + int(length) if length and length.isdigit() else None
            if total is not None and total > opts.max_bytes:
                raise TooLarge(f"{url}: {total} bytes is over the size cap of {opts.max_bytes} bytes")
            written = have
            with part.open("ab" if resumed else "wb") as fh:
                for chunk in resp.iter_bytes(opts.chunk_bytes):
                    written += len(chunk)
                    if written > opts.max_bytes:
                        fh.close()
                        part.unlink(missing_ok=True)
                        raise TooLarge(f"{url}: over the size cap of {opts.max_bytes} bytes")
                    fh.write(chunk)
    except httpx.TransportError as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None
