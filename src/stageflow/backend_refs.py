"""Backend references in config models, declared once: a field that names a backend is
``Annotated[str, BackendRef(kind)]``, and :func:`model_refs` walks any model for the backends it
names. ``stageflow validate`` (through :func:`stageflow.config.backend_refs`), the engines' checks and
tests/test_backend_refs.py read these declarations, so they cannot disagree about which keys name a
backend.

A light module (pydantic and typing only): every section model imports it, and it imports none of them.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class BackendRef:
    """Marks a config field that names a backend of ``kind``: the one declaration that ``stageflow
    validate``, the engines' pre-flight checks and the tests read (through :func:`model_refs`).

    Use it in ``typing.Annotated`` (type checkers accept that form; the value is a backend name, ""
    or None switching the stage off)::

        commerce: Annotated[str, BackendRef("commerce")] = ""
        sinks_used: list[Annotated[str, BackendRef("sinks")]]

    ``options`` names the attribute of the same model that holds the backend's options: a mapping,
    or a method called with the backend name (``VideoConfig.options``, the ``[video.<name>]`` table).
    """

    kind: str
    options: str = "options"


@dataclass(frozen=True)
class BackendUse:
    """One backend a config names: its kind and name, its options, and where the file says so."""

    kind: str
    name: str
    options: dict[str, Any]
    where: str


def field_ref(field: Any) -> tuple[BackendRef, bool] | None:
    """The BackendRef of a pydantic field (pydantic moves a top-level Annotated's metadata to
    ``field.metadata``), and whether the field holds a list of names."""
    for meta in field.metadata:
        if isinstance(meta, BackendRef):
            return meta, False
    return ref_of(field.annotation)


def ref_of(annotation: Any) -> tuple[BackendRef, bool] | None:
    """The BackendRef of a field annotation, and whether the field is a list of names."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, BackendRef):
            return meta, False
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        found = ref_of(arg)
        if found is not None:
            return found[0], found[1] or origin is list
    return None


def _submodels(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _submodels(arg)


def model_refs(model: BaseModel, tables: tuple[str, ...] = (), trail: str = "") -> Iterator[BackendUse]:
    """Every backend ``model`` (and the models inside it) names, in field order. ``tables`` is the
    TOML table path of ``model`` (for the ``where`` label)."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = f"{trail}{name}"
        found = field_ref(field)
        if found is not None:
            ref, many = found
            names = list(value or ()) if many else [value]
            for backend in names:
                if not backend:  # "" or None: the stage is off (or the default is decided at run time)
                    continue
                opts = getattr(model, ref.options, None)
                opts = opts(backend) if callable(opts) else opts
                table = f"[{'.'.join(tables)}]" if tables else "[]"
                yield BackendUse(ref.kind, backend, dict(opts or {}), f"{table} {here}")
            continue
        yield from _nested(value, tables, here)


def _nested(value: Any, tables: tuple[str, ...], here: str) -> Iterator[BackendUse]:
    if isinstance(value, BaseModel):
        # a sub-table: [a.b]; a model inside a list keeps the list's label (``hooks[0]``)
        if "[" in here:
            for use in model_refs(value, tables, here + "."):
                yield _item_label(use, here)
        else:
            yield from model_refs(value, (*tables, here.rpartition(".")[2]))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel):
                yield from model_refs(item, (*tables, here.rpartition(".")[2], str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, BaseModel):
                label = getattr(item, "name", None) if "name" in type(item).model_fields else None
                if isinstance(label, str) and label:  # [[monitor.checks]] api
                    for use in model_refs(item, tables, f"{here}[{i}]."):
                        head = f"[[{'.'.join((*tables, here))}]] {label}"
                        yield BackendUse(use.kind, use.name, use.options, head)
                else:
                    yield from _nested(item, tables, f"{here}[{i}]")


def _item_label(use: BackendUse, item: str) -> BackendUse:
    """A backend named inside a list item is reported at the item (``[discover] sinks[0]``)."""
    table = use.where.partition(" ")[0]
    return BackendUse(use.kind, use.name, use.options, f"{table} {item}")


def backend_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, BackendRef]]:
    """Every field of ``model`` (and of the models it contains) declared as a BackendRef, as
    ``(dotted path, ref)``: the static view of what :func:`model_refs` walks."""
    for name, field in model.model_fields.items():
        found = field_ref(field)
        if found is not None:
            yield f"{prefix}{name}", found[0]
            continue
        for sub in _submodels(field.annotation):
            yield from backend_fields(sub, f"{prefix}{name}.")
