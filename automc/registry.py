"""Registries keyed by the names used in the experiment YAML.

Entries are registered either as objects or as ``"module:attr"`` strings that are imported
only when first used, so loading the config and listing names stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from automc.errors import ConfigError

T = TypeVar("T")


def import_object(path: str, *, what: str = "object") -> Any:
    """Import ``"package.module:attr"``; raise ConfigError naming the path on failure."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{what} {path!r}: cannot import module {module_name!r} ({exc}); "
            "check the name and that it is on PYTHONPATH"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}") from None


class Registry(Generic[T]):
    """A name -> object mapping with lazy ``"module:attr"`` entries."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if obj is None:
            def decorator(fn: T) -> T:
                self._entries[name] = fn
                return fn
            return decorator
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}"
            ) from None
        if isinstance(entry, str):
            entry = import_object(entry, what=self.kind)
            self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
