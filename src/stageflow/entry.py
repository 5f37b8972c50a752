"""The `stageflow` console script. Deliberately tiny: an up-to-date `stageflow build` is answered by
the stdlib-only fast path before typer, pydantic or any plugin is imported (~90 ms saved), and the
common `stageflow sync` invocations run the engine without importing Typer (~60 ms saved); every
other command goes to the Typer app in stageflow.cli."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["build"]:
        from stageflow.build import fastpath

        if fastpath.run(args[1:]):
            return
    elif args[:1] == ["sync"]:
        from stageflow.sync import fastcli

        if fastcli.run(args[1:]):
            return
    from stageflow.cli import run_app  # not cli.main: that would try the build fast path again

    run_app(args)


if __name__ == "__main__":
    main()
