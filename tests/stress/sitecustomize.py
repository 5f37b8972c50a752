"""Injected by tests/stress.sh through PYTHONPATH (never installed, never read by the product): delays
the start-up of background helpers, so a test that checks for one before it exists fails every time
instead of once in a while on a busy machine.

- Python processes that are background helpers (the warm sync server, Prefect servers and workers,
  `stageflow serve`, uvicorn) sleep STAGEFLOW_STRESS_DELAY seconds before they run at all.
- In every Python process, a socketserver (the tests' local HTTP servers for the SaaS APIs, caches and
  health checks) starts answering only after that delay: requests wait in the listen backlog.
"""

from __future__ import annotations

import os
import time

_DELAY = float(os.environ.get("STAGEFLOW_STRESS_DELAY", "1.5") or 0)
#: Each helper: words that all appear in its argv (argv entries and their basenames).
_HELPERS = (
    {"stageflow.fast.sync_daemon"},
    {"prefect", "server", "start"},
    {"prefect", "worker", "start"},
    {"stageflow", "serve"},
    {"stageflow.cli", "serve"},
    {"uvicorn"},
)


def _argv() -> list[str]:
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_helper(argv: list[str]) -> bool:
    words = set(argv) | {os.path.basename(a) for a in argv}
    return any(parts <= words for parts in _HELPERS)


if _DELAY > 0:
    if _is_helper(_argv()):
        time.sleep(_DELAY)

    import socketserver

    _serve_forever = socketserver.BaseServer.serve_forever

    def _late_serve_forever(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(_DELAY)
        return _serve_forever(self, *args, **kwargs)

    socketserver.BaseServer.serve_forever = _late_serve_forever  # type: ignore[method-assign]
