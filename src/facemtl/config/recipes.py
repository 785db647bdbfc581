"""Recipes: YAML files (with ``base:`` chains) and dotted ``--set section.key=value`` overrides -> a :class:`Config`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from facemtl.config.coerce import OverrideText, build_section
from facemtl.config.data_section import DATA_KEYS, build_data, migrate_data
from facemtl.config.sections import Config, DataConfig, MethodConfig, ModelConfig, TrainConfig
from facemtl.config.validate import validate
from facemtl.errors import FacemtlError
from facemtl.registry import METHODS

SECTIONS = ("data", "model", "method", "train")


def _method_config_class(name: str) -> type[MethodConfig]:
    return METHODS.get(name).config_class


def _parse_override(text: str) -> tuple[list[str], str]:
    if "=" not in text:
        raise FacemtlError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in SECTIONS:
        raise FacemtlError(f"override {key!r}: expected section.key with section one of {', '.join(SECTIONS)}")
    return path, raw


def _insert(tree: dict[str, Any], path: list[str], raw: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = OverrideText(raw)


def config_from_dict(
    raw: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = (), *, migrate: bool = True
) -> Config:
    """Build and validate a :class:`Config` from a nested mapping plus dotted overrides.

    Args:
        raw: section -> keys; a stored config (a checkpoint's, a run's ``config.yaml``) or one
            built in code. Recipe files go through :func:`load_config`.
        overrides: ``section.key=value`` strings (``--set``); old keys there are always errors.
        migrate: move ``raw``'s flat ``data`` keys of earlier versions (``data.ferplus_mode``) to
            their place now (``data.ferplus.mode``) silently, so old checkpoints still load;
            False: an error naming the new key (recipes).
    """
    if not isinstance(raw, Mapping):
        raise FacemtlError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}")
    tree: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise FacemtlError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise FacemtlError(f"config section {section!r} must be a mapping, got {values!r}")
        tree[section] = deepcopy(dict(values))  # overrides write into nested mappings: never the caller's
    if migrate and "data" in tree:
        tree["data"] = migrate_data(tree["data"])
    recipe_method = dict(tree.get("method", {}))
    recipe_data = dict(tree.get("data", {}))
    given_data: set[str] = set()
    for text in overrides:
        path, value = _parse_override(text)
        _insert(tree, path, value)
        if path[0] == "data":
            given_data.add(path[1])
    method_name = str(tree.get("method", {}).get("name", MethodConfig.name))
    _drop_other_method_options(tree, recipe_method, method_name)
    _drop_other_dataset_options(tree.get("data", {}), recipe_data, given_data)
    classes = {"model": ModelConfig, "method": _method_config_class(method_name), "train": TrainConfig}
    sections = {s: build_section(classes[s], tree.get(s, {}), s) for s in classes}
    config = Config(data=build_data(tree.get("data", {})), **sections)
    validate(config)
    return config


def _drop_other_dataset_options(data: dict[str, Any], recipe: Mapping[str, Any], given: set[str]) -> None:
    """When an override switches the recipe's dataset, drop the recipe's ``data.<old name>`` options.

    As :func:`_drop_other_method_options`; options given as overrides are kept (and fail).
    """
    recipe_name, name = str(recipe.get("name", DataConfig.name)), str(data.get("name", DataConfig.name))
    if recipe_name != name and recipe_name in recipe and recipe_name not in given:
        del data[recipe_name]
        print(f"facemtl: data.name={name} replaces the recipe's {recipe_name}; its options data.{recipe_name} "
              "do not apply and are ignored", file=sys.stderr)


def _drop_other_method_options(tree: dict[str, Any], recipe_method: Mapping[str, Any], method_name: str) -> None:
    """When an override switches the recipe's method, drop the recipe's options the new method lacks.

    So ``facemtl train configs/scn_synthetic.yaml --set method.name=plain`` runs the same
    recipe as a plain baseline; the dropped keys are named on stderr. Keys given as
    overrides are never dropped (a typo there still fails).
    """
    recipe_name = str(recipe_method.get("name", MethodConfig.name))
    if recipe_name == method_name:
        return
    known = {f.name for f in fields(_method_config_class(method_name))}
    method = tree["method"]
    dropped = [key for key, value in recipe_method.items() if key not in known and method.get(key) is value]
    for key in dropped:
        del method[key]
    if dropped:
        print(f"facemtl: method.name={method_name} replaces the recipe's {recipe_name}; its options "
              f"{', '.join(dropped)} do not apply and are ignored", file=sys.stderr)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML recipe (or start from the defaults when ``path`` is None) and apply overrides.

    A recipe may start with ``base: OTHER.yaml`` (relative to the recipe's folder): it is read
    first and the recipe's keys replace its keys, section by section (and a format's options,
    ``data.<name>``, key by key; a list, such as ``data.mix.sources``, is replaced whole), so
    variants of one recipe state only what differs. Flat ``data`` keys of earlier versions are
    errors naming their new place.
    """
    return config_from_dict(_read_recipe(Path(path)) if path is not None else {}, overrides, migrate=False)


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The sections of the YAML recipe at ``path``, its ``base`` chain merged in."""
    if not path.is_file():
        raise FacemtlError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise FacemtlError(f"{path}: 'base' chain loops back to itself")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise FacemtlError(f"{where}: malformed YAML ({problem})") from None
    if not isinstance(raw, Mapping):
        raise FacemtlError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)})")
    raw = dict(raw)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise FacemtlError(f"{path}: 'base' must be the path of another recipe, got {base!r}")
    merged = _read_recipe(path.parent / base, (*seen, path.resolve()))
    for section, values in raw.items():
        if isinstance(values, Mapping) and isinstance(merged.get(section), Mapping):
            parent = merged[section]
            merged[section] = {**parent, **values}
            for key, value in values.items():  # data.<name>: the format's options, key by key
                if section == "data" and key not in DATA_KEYS and isinstance(value, Mapping) and isinstance(
                        parent.get(key), Mapping):
                    merged[section][key] = {**parent[key], **value}
        else:
            merged[section] = values
    return merged
