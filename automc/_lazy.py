"""Lazy re-exports for packages whose names pull in heavy modules (MindSpore, the Lite toolchain)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to the module
    (absolute, or relative to ``package`` when it starts with '.') that defines it; the module
    is imported on first access and the value cached in the package."""
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}; available: {', '.join(names)}")
        value = getattr(importlib.import_module(module if not module.startswith(".") else package + module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
