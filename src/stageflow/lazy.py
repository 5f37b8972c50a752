"""Import a module on its first attribute access (the standard library's ``importlib.util.LazyLoader``
recipe), so a module of a family that needs an extra can be imported where the extra is missing and
fail only when that code runs: ``stageflow discover --prefect`` imports the video flow module, whose
analysis steps need numpy, on an install without the video extra."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """``name`` itself when imported already; else a module that imports itself when first used. A
    missing module raises ``ModuleNotFoundError`` here, at the import site, only if it cannot be found
    at all: then the returned stand-in raises it on first use instead."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return _Missing(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


class _Missing(ModuleType):
    def __getattr__(self, attr: str) -> object:
        raise ModuleNotFoundError(f"No module named {self.__name__!r}", name=self.__name__)
