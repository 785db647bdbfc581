"""Typed configuration: dataclasses are the source of truth, YAML recipes and dotted
``--set section.key=value`` overrides are checked against them.

The ``method`` section's type depends on ``method.name``: each registered method names
its own config dataclass (a subclass of :class:`MethodConfig`), so ``method.beta`` is a
valid key for SCN and an error for the plain method. Likewise each dataset format declares
its own options (a :class:`DatasetOptions` subclass) under ``data.<name>``: ``data.ferplus.mode``
is valid with ``data.name=ferplus`` and an error otherwise. Both are looked up through the
registries, so this module imports neither the methods nor the formats.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from facemtl.errors import FacemtlError
from facemtl.labels import TASKS
from facemtl.registry import DATASETS, METHODS, check_tasks


def _per_task(value: float) -> dict[str, float]:
    return {task: value for task in TASKS}


@dataclass
class DataConfig:
    """Which dataset and how it is split, corrupted and partially labelled."""

    name: str = "synthetic"
    root: str = ""  # dataset folder for real datasets; unused by the synthetic benchmark
    num_train: int = 8000
    num_val: int = 1000
    num_test: int = 2000
    image_size: int = 64
    seed: int = 0
    label_noise: float = 0.0  # fraction of *training* expression labels flipped to another class
    noise_mode: str = "uniform"  # synthetic: uniform (any face equally) | ambiguous (weak expressions more often)
    label_fraction: dict[str, float] = field(default_factory=lambda: _per_task(1.0))
    imbalance: float = 1.0  # ratio of most to least frequent expression class (geometric)
    num_expr_classes: int = 7
    num_landmarks: int = 5
    difficulty: float = 1.0
    # Real datasets (facemtl.data.formats; README "Datasets"). Defaults keep the synthetic benchmark unchanged.
    val_fraction: float = 0.1  # datasets without a validation split: seeded share of *train* held out (never of test)
    test_fraction: float = 0.1  # datasets without any test split (ExpW, a CSV without split column): share held out
    crop_margin: float = -1.0  # fraction of the face box added on each side; < 0 = the format's default
    # 5 (x, y) points in [0, 1]: faces with landmarks are warped onto them by a similarity transform
    # (the inference pipeline's alignment) instead of the square crop; empty = square crop.
    align_template: list[list[float]] = field(default_factory=list)
    load: str = "auto"  # auto | memory | lazy: decode images once into RAM, or per batch (auto: RAM if a split fits 1 GiB)
    # Batch-time transforms (facemtl.data.augment; applied by the mtfl loader, others may opt in via wrap_splits).
    grey: bool = False  # faces as grey-scale (BT.601 luminance repeated to 3 channels), every split
    augment: str = "none"  # none | landmarks: keypoint-aware rotate/scale/shift/flip of *training* batches
    aug_rotate: float = 15.0  # degrees: angle uniform in [-aug_rotate, aug_rotate]
    aug_scale: float = 0.1  # zoom uniform in [1 - aug_scale, 1 + aug_scale]
    aug_shift: float = 0.05  # shift uniform in [-aug_shift, aug_shift] of the image side, per axis
    aug_flip: float = 0.5  # probability of a horizontal flip (swaps left/right landmarks, mirrors pose)
    # Batch planning and balancing (facemtl.data.sampling; Deng et al.'s incomplete-label recipe).
    batching: str = "mixed"  # mixed: batches of any faces, masks pick rows | per_task: one sub-batch per task per step
    balance: str = "none"  # none | auto (au, expr, va) | tasks joined by "+", e.g. "au+expr": balanced samplers
    mlros_mean_ir: float = 2.0  # ML-ROS: AUs with IRLbl above this are minority labels (official preset)
    mlros_max_clone: float = 0.5  # ML-ROS: at most this fraction of N cloned
    mlros_official_weights: bool = False  # reproduce the official weight bug (1/N * clones instead of 1/N * (1 + clones))
    # The format's own keys, written data.<name>.<key> (data.ferplus.mode, data.bp4d.fold, data.mix.sources):
    # its DatasetOptions, or None for a format without any (synthetic, rafdb, ...).
    options: DatasetOptions | None = None

    def to_dict(self) -> dict[str, Any]:
        """The section as a recipe writes it: the format's options under ``data.<name>``."""
        out = {f.name: deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "options"}
        if self.options is None:
            return out
        at = list(out).index("root") + 1  # after name and root, where a reader looks for them
        items = list(out.items())
        return dict(items[:at] + [(self.name, dataclasses.asdict(self.options))] + items[at:])


OptionsT = TypeVar("OptionsT", bound="DatasetOptions")


@dataclass
class DatasetOptions:
    """Options of one dataset format, its ``data.<name>`` keys; formats subclass this.

    A format attaches its subclass to its builder with :func:`dataset_options`; parsing
    finds it through :data:`~facemtl.registry.DATASETS`, as it finds a method's config class.
    ``moved`` maps flat ``data`` keys of earlier versions to their field here: a recipe or
    ``--set`` still using one is an error naming the new key, a stored config is moved silently.
    """

    moved: ClassVar[dict[str, str]] = {}

    def check(self, data: DataConfig) -> None:
        """Raise a one-line FacemtlError for a bad value; ``data`` is the whole section (``data.name``)."""

    @classmethod
    def migrate(cls, values: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """This section of a stored config; ``old``: every flat key of earlier versions it held."""
        return values

    @classmethod
    def of(cls: type[OptionsT], data: DataConfig) -> OptionsT:
        """``data``'s options if they are this format's, else the defaults (a DataConfig built in code)."""
        return data.options if isinstance(data.options, cls) else cls()


def dataset_options(options: type[DatasetOptions]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a dataset builder: its ``data.<name>`` keys are the fields of ``options``."""

    def attach(builder: Callable[..., Any]) -> Callable[..., Any]:
        builder.options = options  # type: ignore[attr-defined]
        return builder

    return attach


@dataclass
class ModelConfig:
    """The shared network: a backbone and one head per enabled task."""

    backbone: str = "tiny"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    # backbone init: a local .safetensors weight file, a facemtl checkpoint or run folder (its
    # backbone), or facemtl_base (the shipped model's `small` backbone); empty = random init
    pretrained: str = ""
    drop_rate: float = 0.0  # dropout before the heads
    va_bins: int = 0  # 0: VA regressed; 20: VA as 20-bin classification + CCC (Deng et al.), outputs va_logits
    va_bin_values: str = "code"  # binned VA expectation over: code (official linspace(-1, 1, bins)) | centres
    # tasks with their own copy of the backbone's last stage (shared below it); [] = all shared
    branch_tasks: list[str] = field(default_factory=list)


@dataclass
class MethodConfig:
    """Options every method shares; methods subclass this to add their own."""

    name: str = "plain"
    task_weights: dict[str, float] = field(default_factory=lambda: _per_task(1.0))
    va_loss: str = "mse"  # mse | ccc | mse+ccc
    lmk_loss: str = "l1"  # l1 | mse | smooth_l1, on coordinates normalised to the image

    def check(self) -> None:
        """Method-specific validation; subclasses raise FacemtlError for bad values."""


@dataclass
class TrainConfig:
    """Optimisation, schedule, device and checkpointing."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # adamw | adam | sgd
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | step | exponential (per epoch) | none
    warmup_epochs: int = 1
    step_epochs: int = 20  # step scheduler: multiply lr by gamma every step_epochs
    gamma: float = 0.1  # step: factor every step_epochs; exponential: factor every epoch
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    num_workers: int = 0
    eval_batch_size: int = 256
    checkpoint_every: int = 0  # also save last.safetensors every N steps (0: end of epoch only)
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    threads: int = 0  # torch.set_num_threads; 0 = leave torch's default
    # tasks whose validation scores pick the best checkpoint (mean of their primary scores); empty: every
    # task. A main task with auxiliaries (MAL: [au]) should be selected on its own score alone.
    select_tasks: list[str] = field(default_factory=list)
    progress: bool = True
    # Speed (README "Distributed / GPU"); each is safe on CPU.
    amp: str = "none"  # none | bf16: autocast of the forward and loss (no loss scaling needed)
    channels_last: bool = False  # NHWC weights and batches (faster convolutions on recent GPUs)
    compile: bool = False  # torch.compile the network in place (first steps slower while it compiles)
    sync_bn: bool = False  # several CUDA processes: BatchNorm statistics over the global batch


@dataclass
class Config:
    """A whole run: ``data``, ``model``, ``method``, ``train``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["data"] = self.data.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = ("data", "model", "method", "train")

_CHOICES: dict[str, tuple[str, ...]] = {
    "method.va_loss": ("mse", "ccc", "mse+ccc"),
    "method.lmk_loss": ("l1", "mse", "smooth_l1"),
    "train.optimizer": ("adamw", "adam", "sgd"),
    "data.noise_mode": ("uniform", "ambiguous"),
    "train.scheduler": ("cosine", "step", "exponential", "none"),
    "train.device": ("cpu", "cuda", "auto"),
    "data.augment": ("none", "landmarks"),
    "train.amp": ("none", "bf16"),
    "data.batching": ("mixed", "per_task"),
    "model.va_bin_values": ("code", "centres"),
}


def _method_config_class(name: str) -> type[MethodConfig]:
    return METHODS.get(name).config_class


_DATA_KEYS = tuple(f.name for f in fields(DataConfig) if f.name != "options")


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
    old = {key: values.pop(key) for key in list(values) if key in moved and key not in _DATA_KEYS}
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
    valid = [*_DATA_KEYS, *([name] if _options_class(name) else [])]
    return FacemtlError(f"unknown key data.{key}; valid keys in data: {', '.join(valid)}")


def _build_data(values: Mapping[str, Any]) -> DataConfig:
    """The ``data`` section: shared keys, then the format's own under ``data.<name>``."""
    name = str(values.get("name", DataConfig.name))
    options = _options_class(name)
    for key in values:
        if key not in _DATA_KEYS and not (key == name and options is not None):
            raise _data_key_error(key, name)
    data = _build_section(DataConfig, {k: v for k, v in values.items() if k in _DATA_KEYS}, "data")
    if options is not None:
        section = values.get(name) or {}
        if not isinstance(section, Mapping):
            raise FacemtlError(f"data.{name}: expected a mapping of {name} options, got {section!r}")
        data.options = _build_section(options, section, f"data.{name}")
    return data


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


def _build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
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


def _parse_override(text: str) -> tuple[list[str], str]:
    if "=" not in text:
        raise FacemtlError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in SECTIONS:
        raise FacemtlError(f"override {key!r}: expected section.key with section one of {', '.join(SECTIONS)}")
    return path, raw


class _OverrideText(str):
    """Text of a ``--set`` value, parsed once its field's type is known (a str field keeps "2024")."""


def _insert(tree: dict[str, Any], path: list[str], raw: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = _OverrideText(raw)


def _parse_override_text(value: Any, annotation: Any) -> Any:
    if not isinstance(value, _OverrideText):
        return value
    if annotation is str:
        return str(value)
    return yaml.safe_load(value) if value.strip() else ""


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
    sections = {s: _build_section(classes[s], tree.get(s, {}), s) for s in classes}
    config = Config(data=_build_data(tree.get("data", {})), **sections)
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
                if section == "data" and key not in _DATA_KEYS and isinstance(value, Mapping) and isinstance(
                        parent.get(key), Mapping):
                    merged[section][key] = {**parent[key], **value}
        else:
            merged[section] = values
    return merged


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise FacemtlError(f"{key}={value} is out of range; expected {low} <= {key.split('.')[-1]} <= {high}")


def validate(config: Config) -> None:
    """Cross-field and range checks the types alone cannot express."""
    check_tasks(config.model.tasks)
    config.method.check()
    if config.data.options is not None:
        config.data.options.check(config.data)
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise FacemtlError(f"{key}={value!r} is not valid; choose from: {', '.join(choices)}")
    check_tasks(list(config.method.task_weights), "method.task_weights")
    check_tasks(list(config.data.label_fraction), "data.label_fraction")
    for name, value in config.data.label_fraction.items():
        _check_range(f"data.label_fraction.{name}", value, 0.0, 1.0)
    _check_range("data.label_noise", config.data.label_noise, 0.0, 1.0)
    unselectable = [name for name in config.train.select_tasks if name not in config.model.tasks]
    if unselectable:
        raise FacemtlError(f"train.select_tasks: {unselectable[0]!r} is not a task of this model; model.tasks: "
                           f"{', '.join(config.model.tasks)}")
    if config.data.num_expr_classes not in (7, 8):
        raise FacemtlError(f"data.num_expr_classes={config.data.num_expr_classes}; expected 7 or 8")
    if config.data.num_landmarks not in (5, 68):
        raise FacemtlError(f"data.num_landmarks={config.data.num_landmarks}; expected 5 or 68")
    for key in ("data.num_train", "data.num_val", "data.image_size", "train.epochs", "train.batch_size"):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) < 1:
            raise FacemtlError(f"{key} must be at least 1")
    if config.data.image_size < 32:
        raise FacemtlError(f"data.image_size={config.data.image_size}; expected at least 32")
    balance = config.data.balance
    if balance not in ("none", "auto") and not set(balance.split("+")) <= {"au", "expr", "va"}:
        raise FacemtlError(f"data.balance={balance!r} is not valid; choose none, auto or tasks joined by '+' (au, expr, va)")
    if config.model.va_bins < 0 or config.model.va_bins == 1:
        raise FacemtlError(f"model.va_bins={config.model.va_bins}; expected 0 (regression) or at least 2 bins")
    _check_range("data.mlros_max_clone", config.data.mlros_max_clone, 0.0, 1.0)
