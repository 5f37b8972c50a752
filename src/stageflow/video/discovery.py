"""Discovery: find new videos from a source, skipping those already in the store, write them to the
configured sinks, mark them seen and build the summary message.

Each step is a plain function so the Prefect flow (stageflow.flows.video) wraps each in a task and
the CLI calls the same functions directly. Never writes "seen" before the sinks have the rows: a
crash in between re-sends rows (sinks upsert by key) rather than losing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stageflow.config import BackendChoice, DiscoverConfig
from stageflow.plugin_manager import StageflowPluginManager
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


def discover(
    plugins: StageflowPluginManager, source: str, options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    backend = plugins.build("sources", source, options)
    return [item_record(i) for i in backend.discover()]


def select_new(store: Store, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    new: list[dict[str, Any]] = []
    for source, group in by_source.items():
        unseen = store.unseen(source, [r["item_id"] for r in group])
        new.extend(dict(r) for r in group if r["item_id"] in unseen)
    return new


def write_sinks(
    plugins: StageflowPluginManager, sinks: Sequence[BackendChoice], records: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    written = {}
    for choice in sinks:
        written[choice.backend] = plugins.build("sinks", choice.backend, choice.options).write(TABLE, records)
    return written


def mark_seen(store: Store, records: Sequence[Mapping[str, Any]]) -> int:
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)
    return sum(store.mark_seen(source, group) for source, group in by_source.items())


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
