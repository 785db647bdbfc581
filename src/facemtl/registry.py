"""One tiny registry type for backbones, methods, datasets and task specs.

Entries are registered by decorator where they are defined; looking up an unknown
name is a :class:`~facemtl.errors.FacemtlError` that lists the valid names.

A registry names the package that defines its built-in entries (``provider``) and imports
it the first time it is read, as a plugin system would: so a lower layer (``config``
checking ``method.name``) can look an entry up without importing the layer that defines
it, and importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from facemtl.errors import FacemtlError
from facemtl.labels import TASKS

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with a helpful error for unknown names.

    Args:
        kind: what the entries are ("backbone", "method", "dataset"), used in messages.
        provider: module whose import registers the built-in entries (imported on first read).
    """

    def __init__(self, kind: str, provider: str = "") -> None:
        self.kind = kind
        self.provider = provider
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is a bug."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (a test's or a plugin's own); unknown names are ignored."""
        self._entries.pop(name, None)

    def _entries_loaded(self) -> dict[str, T]:
        if self.provider:
            importlib.import_module(self.provider)  # a no-op once imported
        return self._entries

    def get(self, name: str) -> T:
        entries = self._entries_loaded()
        if name not in entries:
            valid = ", ".join(sorted(entries)) or "(none)"
            raise FacemtlError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}")
        return entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries_loaded())

    def __contains__(self, name: Any) -> bool:
        return name in self._entries_loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


BACKBONES: Registry[Callable[..., Any]] = Registry("backbone", "facemtl.models")
METHODS: Registry[Any] = Registry("method", "facemtl.methods")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", "facemtl.data")
TASK_SPECS: Registry[Any] = Registry("task", "facemtl.tasks")


def ordered_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """``tasks`` in the canonical order: the built-in tasks as :data:`facemtl.labels.TASKS`, then
    others by name. Network outputs, ONNX outputs and checkpoints all use this order."""
    builtin = [t for t in TASKS if t in tasks]
    return (*builtin, *sorted(t for t in dict.fromkeys(tasks) if t not in TASKS))


def check_tasks(tasks: Sequence[str], key: str = "model.tasks") -> None:
    """Raise :class:`FacemtlError` if ``tasks`` is empty or names an unregistered task."""
    valid = ", ".join(TASK_SPECS.names())
    if not tasks:
        raise FacemtlError(f"{key} is empty; choose from: {valid}")
    unknown = [t for t in tasks if t not in TASK_SPECS]
    if unknown:
        raise FacemtlError(f"unknown task {unknown[0]!r} in {key}; valid tasks: {valid}")
