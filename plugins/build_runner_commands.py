"""The npm, pnpm and yarn build runners' part of the CLI: ``stageflow build --stop-workers`` stops this
user's warm tsc workers (kept alive ``runner_options.warm_tsc_persist`` seconds after a build) and
exits without building.

Loaded at every CLI start (``register_commands``), so it imports nothing at module level beyond the
hook marker: the warm-tsc module is imported only when the flag is given.
"""

from __future__ import annotations

from collections.abc import Callable

from stageflow.hookspecs import hookimpl


def stop_workers() -> None:
    import typer

    from stageflow.build import warmtsc

    stopped = warmtsc.stop_workers()
    typer.echo(f"stopped {stopped} warm tsc worker(s)", err=True)


@hookimpl
def register_commands(add_option: Callable[..., None]) -> None:
    add_option(
        "build",
        "--stop-workers",
        help="Stop this user's warm tsc workers kept alive after earlier builds "
        "(runner_options warm_tsc_persist) and exit; builds nothing.",
        run=stop_workers,
    )
