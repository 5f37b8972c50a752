"""The one exception hierarchy of stageflow, and its mapping to process exit codes.

Every error a user can cause is a StageflowError whose message is one line that names the input and
the fix. Messages must never contain secrets (tokens, keys, passwords).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StageflowError(Exception):
    """Base of every stageflow error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class JobFailed(StageflowError):
    """A job ran and failed (a build step, a hook, a transfer). Exit 1. ``report``: the job's own
    report when it has one (the selective-build flow's, so ``build --prefect`` prints it)."""

    exit_code = 1
    report: dict[str, Any] | None = None


class BadInput(StageflowError):
    """The user's input (arguments, config, files, environment) is wrong. Exit 2."""

    exit_code = 2


class ConfigError(BadInput):
    """stageflow.toml is malformed or names an unknown key."""


class SettingsError(BadInput):
    """An environment setting (STAGEFLOW_HOME, ...) is unusable."""


class PluginError(BadInput):
    """A plugin cannot be loaded or used (unknown backend, duplicate name, bad hook)."""


class UnknownBackendError(PluginError):
    """A backend name that no loaded plugin registered."""


class DuplicateBackendError(PluginError):
    """Two plugins registered the same backend name for one kind."""


class MissingDependencyError(PluginError):
    """A backend's optional dependencies are not installed."""


class Refused(StageflowError):
    """A safety check refused the operation before anything was written. Exit 3."""

    exit_code = 3


class IntegrityError(Refused):
    """Stored data failed a checksum or integrity check."""


# --------------------------------------------------------------------------- video analysis, part 2


class ServiceError(JobFailed):
    """An external service (Coupang, Gemini, Slack, Sheets) answered with an error after retries."""


class ServiceAuthError(ServiceError):
    """An external service refused the credentials (HTTP 401/403): fix the key or token."""


class RateLimited(ServiceError):
    """A local token bucket or the service itself refused a call for now: wait, or raise the limit."""


class CircuitOpen(ServiceError):
    """The circuit breaker of a service is open after repeated failures: calls are refused until it
    cools down."""


class BudgetExhausted(Refused):
    """The monthly call budget of a service is spent (blocked at 95 %): raise the budget or wait."""


class AnalysisFailed(JobFailed):
    """An analyzer could not produce a valid answer for one time range (after retries)."""


class IllegalTransition(BadInput):
    """A candidate status change that the status machine does not allow."""


def run_command(command: Callable[[], T], *, debug: bool = False) -> T:
    """Run one CLI command the way every ``stageflow`` entry point does: a StageflowError is its one
    line on stderr and its exit code, Ctrl-C exits 130, any other exception is one line and exit 1
    (``debug``: StageflowError and unexpected errors propagate with their traceback)."""
    import sys

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        return command()
    except StageflowError as exc:
        if debug:
            raise
        say(f"stageflow: error: {exc}")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        say("stageflow: interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if debug:
            raise
        say(f"stageflow: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        raise SystemExit(1) from None
