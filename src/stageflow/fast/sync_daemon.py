"""The warm sync server's process (``python -m stageflow.fast.sync_daemon SOCKET IDLE``, started by
:func:`stageflow.fast.sync_server.start_in_background`): does the imports a ``stageflow sync`` pays
(the Typer app, the engine, the sync plugins) once, then serves requests with
:func:`stageflow.entry.run_sync` as the handler, so each fork starts warm.

The launcher is the only module that ties the server to a command: the server takes the handler.
"""

from __future__ import annotations

import sys


def warm_up() -> None:
    """Import what every served sync needs, and load the sync plugins once for all forks."""
    from stageflow import cli  # noqa: F401  (the Typer app: a terminal's progress-bar path)
    from stageflow.fast import sync_cli  # noqa: F401
    from stageflow.sync import engine, notify  # noqa: F401

    engine._sync_plugins()  # cached by the kernel: every fork reuses it


def main(argv: list[str]) -> None:
    from stageflow.entry import run_sync
    from stageflow.fast import sync_zygote

    warm_up()
    sync_zygote.serve(argv[0], float(argv[1]), handler=run_sync)


if __name__ == "__main__":
    main(sys.argv[1:])
