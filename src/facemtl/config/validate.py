"""Cross-field and range checks the types alone cannot express."""

from __future__ import annotations

from facemtl.config.sections import Config
from facemtl.errors import FacemtlError
from facemtl.registry import check_tasks

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
