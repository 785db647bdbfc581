"""Values of recipe keys checked against their dataclass annotations (and ``--set`` text parsed once the type is known)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import yaml

from facemtl.errors import FacemtlError


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation, converting only where lossless."""
    value = _parse_override_text(value, annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, str):  # "expr,au" or "1,12" on the command line
            items = [v.strip() for v in value.split(",") if v.strip()]
            value = items if item_type is str else [yaml.safe_load(v) for v in items]
        if not isinstance(value, (list, tuple)):
            raise FacemtlError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, value_type = typing.get_args(annotation)
        if not isinstance(value, Mapping):
            raise FacemtlError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if annotation is Any:  # data.mix.sources entries: data sections, checked by the mix's options
        return value
    if annotation is float and isinstance(value, str):
        value = _float_or_text(value)  # YAML 1.1 reads 1e-5 (no dot) as text
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(annotation)
    if ok is None:
        raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
    if not ok:
        raise FacemtlError(f"{key}: expected {_type_name(annotation)}, got {value!r}")
    return float(value) if annotation is float else value


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise FacemtlError(f"unknown key {section}.{key}; valid keys in {section}: {', '.join(valid)}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    defaults = cls()
    for key, value in kwargs.items():
        default = getattr(defaults, key)
        if isinstance(default, dict):  # partial dicts update the defaults (e.g. one task weight)
            value = {**default, **value}
        setattr(defaults, key, value)
    return defaults


class OverrideText(str):
    """Text of a ``--set`` value, parsed once its field's type is known (a str field keeps "2024")."""


def _parse_override_text(value: Any, annotation: Any) -> Any:
    if not isinstance(value, OverrideText):
        return value
    if annotation is str:
        return str(value)
    return yaml.safe_load(value) if value.strip() else ""
