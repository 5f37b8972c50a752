"""Hook specifications: one registration hook per stage kind.

Each hook receives a ``register`` callable; a plugin calls it once per backend it provides::

    @hookimpl
    def register_notifiers(register: Register) -> None:
        register("example", ExampleNotifier, config=ExampleConfig, description="...")

``register(name, factory, *, config=NoConfig, requires=(), extra=None, description="")``:
``factory`` is called with a validated instance of ``config`` (a pydantic model) and returns an object
that satisfies the kind's Protocol in :mod:`stageflow.contracts`. ``requires`` lists importable module
names the backend needs (checked without importing them); ``extra`` names the stageflow extra that
installs them. Implementations may accept fewer arguments than a spec declares, so specs can grow
without breaking plugins. Every hook here is documented in docs/plugins.md and has a test
(both are enforced by tests/test_plugin_guards.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import typer
    from pydantic import BaseModel

PROJECT_NAME = "stageflow"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The ``register`` callable every hook receives (the signature above)."""

    def __call__(
        self,
        name: str,
        factory: Callable[[Any], object],
        *,
        config: type[BaseModel] = ...,
        requires: Iterable[str] = (),
        extra: str | None = None,
        description: str = "",
    ) -> None: ...


class AddOption(Protocol):
    """The ``add_option`` callable ``register_commands`` receives: a boolean flag on an existing command
    that, when given, runs ``run()`` instead of the command (``stageflow build --stop-workers``)."""

    def __call__(self, command: str, flag: str, *, help: str, run: Callable[[], object]) -> None: ...


@hookspec
def register_commands(app: typer.Typer, add_option: AddOption) -> None:
    """Add CLI commands (``app.command("name")(fn)``, ``app.add_typer(group, name=...)``) or a flag to a
    built-in command (``add_option("build", "--stop-workers", help=..., run=fn)``). Called once at CLI
    startup, so the module holding this hookimpl must import nothing heavy at module level: import
    engines inside the command functions (``stageflow --help`` stays fast)."""


@hookspec
def register_sources(register: Register) -> None:
    """Register video sources (rss, folder, urls): objects with ``discover() -> list[MediaItem]``."""


@hookspec
def register_downloaders(register: Register) -> None:
    """Register media downloaders (e.g. a yt-dlp plugin): ``can_handle(url)`` and ``download(url, dest)``."""


@hookspec
def register_transcribers(register: Register) -> None:
    """Register speech-to-text backends (faster-whisper): ``transcribe(audio, language) -> Transcript``."""


@hookspec
def register_detectors(register: Register) -> None:
    """Register object detectors (ultralytics, onnx): ``detect(frames) -> list[Detection]``."""


@hookspec
def register_ocr_engines(register: Register) -> None:
    """Register OCR engines (rapidocr, tesseract): ``read(frames) -> list[OcrText]``."""


@hookspec
def register_analyzers(register: Register) -> None:
    """Register analyzers (rules, gemini): ``find_ranges(transcript)`` and ``candidate(range, evidence)``."""


@hookspec
def register_commerce(register: Register) -> None:
    """Register commerce APIs (coupang): ``search(keyword, limit)`` and ``deeplink(urls)``."""


@hookspec
def register_sinks(register: Register) -> None:
    """Register result sinks (sqlite, jsonl, gsheets): ``write(table, records) -> int``."""


@hookspec
def register_notifiers(register: Register) -> None:
    """Register notifiers (log, slack): ``notify(message: Message) -> None``."""


@hookspec
def register_transports(register: Register) -> None:
    """Register deploy transports (local, rsync): ``send(source, dest, changes) -> TransferStats``."""


@hookspec
def register_build_runners(register: Register) -> None:
    """Register workspace build runners (npm, pnpm, yarn): ``run(task: BuildTask) -> BuildOutcome``."""


@hookspec
def register_build_caches(register: Register) -> None:
    """Register build caches (local dir, http): ``fetch(key, dest)``, ``store(key, root, outputs, log)``."""


@hookspec
def register_deploy_hooks(register: Register) -> None:
    """Register post-deploy hooks (pm2, health, shell): ``run(context: DeployContext) -> HookOutcome``,
    and optionally ``preflight(context: PreflightContext)``, called by the safety net before anything
    is written (raise ``Refused`` to stop the sync)."""


@hookspec
def register_checks(register: Register) -> None:
    """Register monitor probes (health URLs, role markers, disk): ``probe() -> CheckResult``."""
