"""Typed configuration: dataclasses are the source of truth, YAML recipes and dotted
``--set section.key=value`` overrides are checked against them.

The ``method`` section's type depends on ``method.name``: each registered method names
its own config dataclass (a subclass of :class:`MethodConfig`), so ``method.beta`` is a
valid key for SCN and an error for the plain method. Likewise each dataset format declares
its own options (a :class:`DatasetOptions` subclass) under ``data.<name>``: ``data.ferplus.mode``
is valid with ``data.name=ferplus`` and an error otherwise. Both are looked up through the
registries, so this package imports neither the methods nor the formats.

- :mod:`~facemtl.config.sections`: the dataclasses;
- :mod:`~facemtl.config.recipes`: YAML recipes, ``base:`` chains and ``--set`` overrides;
- :mod:`~facemtl.config.data_section`: ``data.<name>`` options and keys that moved;
- :mod:`~facemtl.config.coerce`: values checked against annotations;
- :mod:`~facemtl.config.validate`: cross-field and range checks.
"""

from facemtl.config.data_section import migrate_data
from facemtl.config.recipes import SECTIONS, config_from_dict, load_config
from facemtl.config.sections import (
    Config,
    DataConfig,
    DatasetOptions,
    MethodConfig,
    ModelConfig,
    TrainConfig,
    dataset_options,
)
from facemtl.config.validate import validate

__all__ = [
    "SECTIONS", "Config", "DataConfig", "DatasetOptions", "MethodConfig", "ModelConfig", "TrainConfig",
    "config_from_dict", "dataset_options", "load_config", "migrate_data", "validate",
]
