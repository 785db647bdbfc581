"""One tiny registry type for backbones, methods and datasets.

Entries are registered by decorator where they are defined; looking up an unknown
name is a :class:`~facemtl.tasks.FacemtlError` that lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from facemtl.tasks import FacemtlError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with a helpful error for unknown names.

    Args:
        kind: what the entries are ("backbone", "method", "dataset"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is a bug."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise FacemtlError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


BACKBONES: Registry[Callable[..., Any]] = Registry("backbone")
METHODS: Registry[Any] = Registry("method")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
