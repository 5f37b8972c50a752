"""Discovery: find new videos from a source, skipping those already in the store, write them to the
configured sinks, mark them seen and send the summary message.

:func:`run_discovery` is the one sequence (check backends -> discover -> select new -> write each
sink -> mark seen -> notify if something is new). Every step is called through
``call(step, *args, **kwargs)``: :func:`direct` runs it in this process (``stageflow discover``); the
video-discovery flow passes a dispatcher that runs each step as its Prefect task
(``stageflow.flows.video``). The keyword arguments ``plugins`` and ``store`` are this process's
objects: a dispatcher drops them and its tasks build or open their own. Never writes "seen" before
the sinks have the rows: a crash in between re-sends rows (sinks upsert by key) rather than losing
them. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from stageflow.config import BackendChoice, DiscoverConfig, NotifyConfig
from stageflow.plugin_manager import StageflowPluginManager, get_plugin_manager
from stageflow.stages import MediaItem, Message
from stageflow.store import Store

TABLE = "videos"


def item_record(item: MediaItem) -> dict[str, Any]:
    """A JSON-safe record of an item, keyed by ``id`` = ``<source>:<item_id>``."""
    data = asdict(item)
    data["published"] = item.published.isoformat() if item.published else None
    data["extra"] = dict(item.extra)
    data["id"] = f"{item.source}:{item.item_id}"
    return data


#: call(step, *args, **kwargs) -> the step's result.
Call = Callable[..., Any]
#: on_writing(new, sinks) -> advance: called once before the sinks are written; ``advance()`` after
#: each sink (the flow's progress artifact).
OnWriting = Callable[[Sequence[Mapping[str, Any]], Sequence[BackendChoice]], Callable[[], Any]]


class DiscoveryParams(BaseModel):
    """One discovery run: the source, the sinks (empty: the store and ``$STAGEFLOW_HOME/results``),
    the notifier (shown as a form in the Prefect UI)."""

    source: str = "rss"
    options: dict[str, Any] = Field(default_factory=dict)
    sinks: list[BackendChoice] = Field(default_factory=list)
    notifier: str = "log"
    notifier_options: dict[str, Any] = Field(default_factory=dict)
    notify_when_empty: bool = False  # [discover] notify_when_empty

    @classmethod
    def from_sections(cls, discover: DiscoverConfig, notify: NotifyConfig) -> DiscoveryParams:
        """The run stageflow.toml's [discover] and [notify] describe (the caller loads the file)."""
        return cls(
            source=discover.source,
            options=discover.options,
            sinks=discover.sinks,
            notifier=notify.backend,
            notifier_options=notify.options,
            notify_when_empty=discover.notify_when_empty,
        )


@dataclass
class Discovered:
    """What one run found (``records``), what of it was new, and the rows each sink took."""

    records: list[dict[str, Any]]
    new: list[dict[str, Any]]
    written: dict[str, int]
    home: Path

    def result(self) -> dict[str, Any]:
        """The run's summary, as ``stageflow discover --json`` prints it and the flow returns it."""
        return {
            "found": len(self.records),
            "new": len(self.new),
            "written": self.written,
            "home": str(self.home),
        }


def direct(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a step in this process."""
    return step(*args, **kwargs)


@contextmanager
def opened(store: Store | None = None) -> Iterator[Store]:
    """``store`` itself, or the configured store opened (and closed) for this step."""
    if store is not None:
        yield store
        return
    from stageflow.store import open_store

    own = open_store()
    try:
        yield own
    finally:
        own.close()


def run_discovery(
    params: DiscoveryParams,
    *,
    call: Call = direct,
    plugins: StageflowPluginManager | None = None,
    store: Store | None = None,
    on_writing: OnWriting | None = None,
) -> Discovered:
    """The discovery sequence, once for the CLI and the flow. Every backend is built before anything
    is written (an unknown source, sink or notifier fails the run here); nothing new, no message
    (unless ``notify_when_empty``)."""
    from stageflow import settings

    home = settings.home()
    sinks = list(params.sinks) or default_sinks(home)
    call(check_backends, params, sinks, plugins=plugins)
    records = call(discover, params.source, params.options, plugins=plugins)
    new = call(select_new, records, store=store)
    advance = on_writing(new, sinks) if on_writing else None
    written: dict[str, int] = {}
    for choice in sinks:
        written.update(call(write_sink, choice, new, plugins=plugins))
        if advance:
            advance()
    call(mark_seen, new, store=store)
    if should_notify(new, params.notify_when_empty):
        message = summary_message(len(records), new)
        call(notify, params.notifier, params.notifier_options, message, plugins=plugins)
    return Discovered(records=records, new=new, written=written, home=home)


# --------------------------------------------------------------------------- the steps


def check_backends(
    params: DiscoveryParams, sinks: Sequence[BackendChoice], plugins: StageflowPluginManager | None = None
) -> None:
    """Resolve and configure every backend before anything is written (unknown names fail here)."""
    plugins = plugins or get_plugin_manager()
    plugins.registry("sources").validate_config(params.source, params.options)
    for choice in sinks:
        plugins.build("sinks", choice.backend, choice.options)
    plugins.build("notifiers", params.notifier, params.notifier_options)


def discover(
    source: str, options: Mapping[str, Any], plugins: StageflowPluginManager | None = None
) -> list[dict[str, Any]]:
    """Step *discover*: the source's items as records."""
    backend = (plugins or get_plugin_manager()).build("sources", source, options)
    return [item_record(i) for i in backend.discover()]


def select_new(records: Sequence[Mapping[str, Any]], store: Store | None = None) -> list[dict[str, Any]]:
    """Step *select-new*: the records whose item the store has not seen (per source)."""
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    new: list[dict[str, Any]] = []
    with opened(store) as s:
        for source, group in by_source.items():
            unseen = s.unseen(source, [r["item_id"] for r in group])
            new.extend(dict(r) for r in group if r["item_id"] in unseen)
    return new


def write_sink(
    choice: BackendChoice, records: Sequence[Mapping[str, Any]], plugins: StageflowPluginManager | None = None
) -> dict[str, int]:
    """Step *write-sink*: the records into one sink (table ``videos``; sinks upsert by key, so a retry
    or a re-run writes nothing twice). Called with no records too: a sink then writes nothing."""
    backend = (plugins or get_plugin_manager()).build("sinks", choice.backend, choice.options)
    return {choice.backend: backend.write(TABLE, records)}


def mark_seen(records: Sequence[Mapping[str, Any]], store: Store | None = None) -> int:
    """Step *mark-seen*: remember the records' items, so the next run skips them."""
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    with opened(store) as s:
        return sum(s.mark_seen(source, group) for source, group in by_source.items())


def notify(
    notifier: str, options: Mapping[str, Any], message: Message, plugins: StageflowPluginManager | None = None
) -> None:
    """Step *notify*: the summary through the configured notifier."""
    (plugins or get_plugin_manager()).build("notifiers", notifier, dict(options)).notify(message)


def should_notify(new: Sequence[Mapping[str, Any]], when_empty: bool = False) -> bool:
    """Whether a run posts its summary: when something is new, or always with
    ``[discover] notify_when_empty = true`` (the CLI and the flow both ask this)."""
    return bool(new) or when_empty


def summary_message(found: int, new: Sequence[Mapping[str, Any]], link: str | None = None) -> Message:
    titles = [str(r.get("title", "")) for r in new[:5]]
    text = "\n".join(f"• {t}" for t in titles) + ("\n…" if len(new) > 5 else "")
    return Message(
        title=f"stageflow discovery: {len(new)} new of {found} found",
        text=text,
        fields={"found": str(found), "new": str(len(new))},
        link=link,
    )


def default_sinks(home: Path) -> list[BackendChoice]:
    return [
        BackendChoice(backend="sqlite"),
        BackendChoice(backend="jsonl", options={"directory": str(home / "results")}),
    ]


def resolve_sinks(cfg: DiscoverConfig, home: Path) -> list[BackendChoice]:
    return list(cfg.sinks) or default_sinks(home)
