"""The `stageflow` console script. Deliberately tiny: an up-to-date `stageflow build` is answered by
the stdlib-only fast path before typer, pydantic or any plugin is imported (~90 ms saved); a
`stageflow sync` is handed to the warm sync server when one runs (stageflow.fast.sync_server: no
imports paid at all), else its common invocations run the engine without importing Typer (~60 ms
saved) and leave a server for the next one; every other command goes to the Typer app in
stageflow.cli. Top floor: the fast paths live beside it in stageflow.fast."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["build"]:
        from stageflow.fast import build as fastpath

        if fastpath.run(args[1:]):
            return
    elif args[:1] == ["sync"]:
        from stageflow.fast import sync_server as server

        code = server.forward(args)
        if code is not None:
            raise SystemExit(code)
        try:
            run_sync(args)
        finally:
            server.start_in_background(args)
        return
    from stageflow.cli import run_app  # not cli.main: that would try the build fast path again

    run_app(args)


def run_sync(args: list[str]) -> None:
    """``stageflow sync ...`` in this process: the fast path when it applies, else the Typer app (also
    what the warm sync server's forks run)."""
    from stageflow.fast import sync_cli

    if not sync_cli.run(args[1:]):
        from stageflow.cli import run_app

        run_app(args)


if __name__ == "__main__":
    main()
