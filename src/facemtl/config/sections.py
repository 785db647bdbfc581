"""The recipe's four sections as typed dataclasses: the source of truth for every key.

``method`` and ``data.<name>`` are open: each method subclasses :class:`MethodConfig`, each
dataset format subclasses :class:`DatasetOptions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import yaml

from facemtl.labels import TASKS


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
