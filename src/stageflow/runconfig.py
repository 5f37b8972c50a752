"""How a flow run finds its configuration: the parameters it was given, then the project file
(``STAGEFLOW_CONFIG``, else ``stageflow.toml`` in the start directory), then the defaults — for every
section, ``[notify]`` and ``[video]`` included.

A deployment's parameters usually carry only what differs per deployment (``inputs``, ``source``…);
everything else comes from the project file the worker's environment names, exactly as the CLI reads
it. A flow calls :func:`resolve_params` first thing::

    params = resolve_params(params)

which also sends stageflow's own loggers to the Prefect run log (:func:`attach_run_logging`).
Plain module: no Prefect import unless a run log is attached.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from stageflow.config import SECTIONS, ProjectConfig, find_config, load_config

P = TypeVar("P", bound=BaseModel)


def attach_run_logging(level: int = logging.INFO) -> None:
    """Send the ``stageflow`` logger (engines, notifiers, the monitor) to the Prefect run log.

    ``PREFECT_LOGGING_EXTRA_LOGGERS=stageflow`` (set by ``stageflow pools create`` and ``stageflow
    serve``) attaches Prefect's handlers but leaves the level at the root's WARNING, so INFO lines are
    lost; without it no handler is attached at all. Idempotent; a no-op outside a Prefect run."""
    from stageflow.orchestration import in_prefect_run

    if not in_prefect_run():
        return
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("stageflow")
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        handler = APILogHandler()
        # The handler stays on the logger after the run; lines logged later outside any run (the
        # CLI, tests, a second flow's set-up) would each warn "without a flow run id". Drop them.
        handler.addFilter(_InRunFilter())
        logger.addHandler(handler)


class _InRunFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from stageflow.orchestration import in_prefect_run

        return in_prefect_run()


def load_project(config: str | Path | None = None, start: Path | None = None) -> ProjectConfig:
    """The project file: ``config`` when given, else ``STAGEFLOW_CONFIG``, else ``start``'s (default:
    the working directory's) ``stageflow.toml``, else the defaults."""
    if config:
        return load_config(Path(config))
    path = find_config(start)
    return load_config(path) if path is not None else ProjectConfig()


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def section_data(cfg: ProjectConfig, name: str) -> dict[str, Any]:
    """The file's ``[name]`` table as plain data (empty when the file has none)."""
    if not cfg.given(name):
        return {}
    return cfg.section(name).model_dump(mode="json", by_alias=True, exclude_unset=True)


def resolve_params(params: P, start: str | Path | None = None) -> P:
    """A copy of a flow's parameter model with what was not given filled from the project file:

    * a dict field named like a section (``video``, ``build``, ``sync``, ``monitor``): the file's
      table with the given keys on top;
    * ``notifier`` / ``notifier_options`` not given: ``[notify]`` backend and options;
    * ``config`` not given: the file found (so the flow's tasks read the same one).

    "Given" is what the run's parameters set (pydantic's ``model_fields_set``): a value spelled out in
    prefect.yaml or the run form always wins, a default never hides the file."""
    attach_run_logging()
    fields = type(params).model_fields
    given = params.model_fields_set
    explicit = getattr(params, "config", None) if "config" in fields else None
    start_dir = Path(start) if start else None
    if start_dir is None:
        for attr in ("repo", "source"):
            value = getattr(params, attr, None) if attr in fields else None
            if isinstance(value, str) and value and Path(value).is_dir():
                start_dir = Path(value)
                break
    cfg = load_project(explicit, start_dir)
    updates: dict[str, Any] = {}
    for name in SECTIONS:
        if name in fields and isinstance(getattr(params, name), Mapping):
            mine = getattr(params, name) if name in given else {}
            updates[name] = deep_merge(section_data(cfg, name), mine)
    if "notifier" in fields and "notifier" not in given:
        updates["notifier"] = cfg.notify.backend
        if "notifier_options" in fields and "notifier_options" not in given:
            updates["notifier_options"] = dict(cfg.notify.options)
    if "config" in fields and not explicit and cfg.source_path is not None:
        updates["config"] = str(cfg.source_path)
    resolved = params.model_copy(update=updates)
    # model_copy keeps fields_set: what was given stays "given" for a second resolve
    return resolved
