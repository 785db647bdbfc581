"""The ``data`` section: shared keys flat, each format's own under ``data.<name>``; flat keys of earlier
versions give an error naming their new place (recipes) or move silently (stored configs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from facemtl.config.coerce import build_section
from facemtl.config.sections import DataConfig, DatasetOptions
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS

DATA_KEYS = tuple(f.name for f in fields(DataConfig) if f.name != "options")


def _options_class(name: str) -> type[DatasetOptions] | None:
    return getattr(DATASETS.get(name), "options", None)


def _moved_keys() -> dict[str, list[str]]:
    """Flat ``data`` keys of earlier versions -> their dotted keys now, over every format."""
    out: dict[str, list[str]] = {}
    for name in DATASETS.names():
        for old, new in getattr(_options_class(name), "moved", {}).items():
            out.setdefault(old, []).append(f"data.{name}.{new}")
    return out


def migrate_data(values: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``data`` section with its flat keys of earlier versions moved to ``data.<name>``.

    Old configs hold every format's keys, at their defaults but for their own format's:
    the keys the format took move into its section (unless the section sets them), the
    others are dropped. A section without old keys is returned as it was.
    """
    values = dict(values)
    moved = _moved_keys()
    old = {key: values.pop(key) for key in list(values) if key in moved and key not in DATA_KEYS}
    name = str(values.get("name", DataConfig.name))
    options = _options_class(name)
    if options is None or not (old or isinstance(values.get(name), Mapping)):
        return values
    section = dict(values.get(name) or {})
    for key, new in options.moved.items():
        if key in old:
            section.setdefault(new, old[key])
    values[name] = options.migrate(section, old)
    return values


def _data_key_error(key: Any, name: str) -> FacemtlError:
    moved = _moved_keys().get(key)
    if moved:
        own = [new for new in moved if new.startswith(f"data.{name}.")]
        return FacemtlError(f"data.{key} moved: use {' or '.join(own or moved)}")
    if key == name:
        return FacemtlError(f"data.{key}: dataset {name} has no options of its own")
    if key in DATASETS:
        return FacemtlError(f"data.{key} holds options of dataset {key}, but data.name={name}")
    valid = [*DATA_KEYS, *([name] if _options_class(name) else [])]
    return FacemtlError(f"unknown key data.{key}; valid keys in data: {', '.join(valid)}")


def build_data(values: Mapping[str, Any]) -> DataConfig:
    """The ``data`` section: shared keys, then the format's own under ``data.<name>``."""
    name = str(values.get("name", DataConfig.name))
    options = _options_class(name)
    for key in values:
        if key not in DATA_KEYS and not (key == name and options is not None):
            raise _data_key_error(key, name)
    data = build_section(DataConfig, {k: v for k, v in values.items() if k in DATA_KEYS}, "data")
    if options is not None:
        section = values.get(name) or {}
        if not isinstance(section, Mapping):
            raise FacemtlError(f"data.{name}: expected a mapping of {name} options, got {section!r}")
        data.options = build_section(options, section, f"data.{name}")
    return data
