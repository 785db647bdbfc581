"""The task spec: everything facemtl knows about one task, in one object.

A :class:`TaskSpec` owns what used to be branched on ``task == "..."`` across the code:

- the label: its dtype and per-sample shape, and the shape of its mask (:meth:`label_shape`);
- the head that predicts it (:meth:`build_head`) and the loss that trains it (:meth:`loss`);
- evaluation: how outputs become predictions (:meth:`decode`), its metrics, the one
  higher-is-better score that selects checkpoints, and the rows of the metrics table;
- inference: named raw outputs (:meth:`output_names`, :meth:`flatten`; ONNX outputs are
  these), probabilities (:meth:`postprocess`), the mirror view of test-time augmentation
  (:meth:`unmirror`), ensembles (:meth:`average`), and its CSV columns (:meth:`columns`,
  :meth:`row`).

Adding a task is one subclass registered in :data:`facemtl.registry.TASK_SPECS` (see
``tasks/expr.py`` for the smallest real one and docs/architecture.md).

Module-level imports stay numpy-only: the inference pipeline reads specs with the ONNX
backend, where torch may be absent. Methods that need torch import it where they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from facemtl.labels import LabelSpaces

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Maps crop-normalised points ``[K, 2]`` to original-image pixels (the pipeline's alignment inverse).
ToImage = Callable[[np.ndarray], np.ndarray]


class TaskSpec:
    """Base class of task specs; subclasses set :attr:`name` and override what differs.

    Class attributes:
        name: the task key (``expr``, ``au``...): the key of its labels, masks, outputs and metrics.
        title: its name for people (report sections).
        label_dtype: numpy dtype name of its labels (``"int64"`` classes, ``"float32"`` values).
        column_order: where its columns go in the CSV (lower first), so files keep one layout.
        headline: metric names shown in the metrics table, in order.
        distillable: a teacher's outputs can train it (:meth:`soft_target_loss`, Deng et al.).
    """

    name: str = ""
    title: str = ""
    label_dtype: str = "float32"
    column_order: int = 100
    headline: tuple[str, ...] = ()
    distillable: bool = False

    # -- labels ---------------------------------------------------------------------------
    def label_shape(self, spaces: LabelSpaces) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-sample shapes of ``(label, mask)``; ``()`` is one flag or one class id per sample."""
        return (self.output_size(spaces),), ()

    def output_size(self, spaces: LabelSpaces) -> int:
        """Number of head outputs (the width of its linear layer)."""
        raise NotImplementedError(f"task {self.name!r} must define output_size")

    def label_names(self, spaces: LabelSpaces) -> tuple[str, ...]:
        """What each label column means (class, AU or attribute names): two models agree on the
        task when these match (a distillation teacher and its student)."""
        return ()

    def empty_labels(self, count: int, spaces: LabelSpaces) -> tuple[np.ndarray, np.ndarray]:
        """``count`` unlabelled samples: zero labels and an all-False mask (for datasets that lack the task)."""
        label_shape, mask_shape = self.label_shape(spaces)
        return np.zeros((count, *label_shape), self.label_dtype), np.zeros((count, *mask_shape), bool)

    # -- training -------------------------------------------------------------------------
    def build_head(self, in_features: int, spaces: LabelSpaces, spatial: bool, options: dict[str, Any]) -> nn.Module:
        """The head: ``head(feat [B, D], feat_map [B, D, h, w]) -> {output name: tensor}``.

        ``spatial``: the backbone gives a CNN feature map; ``options``: the ``model`` config keys
        (e.g. ``va_bins``), each spec reading its own.
        """
        from facemtl.models.heads import LinearHead  # torch: absent from ONNX-only inference installs

        return LinearHead(self.name, in_features, self.output_size(spaces))

    def loss(self, outputs: dict[str, Any], labels: torch.Tensor, mask: torch.Tensor, options: Any) -> torch.Tensor:
        """Unweighted loss over the labelled entries; an exact zero in the graph when none is labelled.

        ``options``: the method config (``va_loss``, ``lmk_loss``...).
        """
        raise NotImplementedError(f"task {self.name!r} must define loss")

    def soft_target_loss(self, student: dict[str, Any], teacher: dict[str, Any], temperature: float,
                         t_squared: bool) -> torch.Tensor:
        """Per-sample ``[B]`` loss of the student's outputs against a teacher's (only if :attr:`distillable`)."""
        raise NotImplementedError(f"task {self.name!r} has no soft-target loss")

    # -- evaluation -----------------------------------------------------------------------
    def decode(self, output: Any) -> np.ndarray:
        """A batch of outputs -> numpy predictions the metrics read (default: the values)."""
        return output.float().cpu().numpy()

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        """Metrics over labelled samples (called only when at least one is labelled)."""
        raise NotImplementedError(f"task {self.name!r} must define metrics")

    def primary_score(self, result: dict[str, Any]) -> float:
        """One higher-is-better number: what checkpoint selection averages over tasks."""
        raise NotImplementedError(f"task {self.name!r} must define primary_score")

    def table_rows(self, result: dict[str, Any]) -> list[tuple[str, Any]]:
        """``(metric, value)`` rows of the metrics table (value None when absent)."""
        return [(metric, result.get(metric)) for metric in self.headline]

    # -- inference ------------------------------------------------------------------------
    def output_names(self, spaces: LabelSpaces) -> list[str]:
        """Names of its raw outputs (one per tensor; ONNX outputs carry these names)."""
        return [self.name]

    def flatten(self, output: Any, spaces: LabelSpaces) -> dict[str, Any]:
        """Its network output as ``{name: tensor}`` in :meth:`output_names` order."""
        return {self.name: output}

    def postprocess(self, raw: dict[str, np.ndarray], spaces: LabelSpaces) -> Any:
        """Raw outputs (numpy, keyed by :meth:`output_names`) -> what :meth:`row` reads (e.g. probabilities)."""
        return raw[self.name]

    def unmirror(self, value: Any, spaces: LabelSpaces) -> Any:
        """Post-processed outputs of mirrored faces expressed for the faces as given (default: unchanged)."""
        return value

    def average(self, values: Sequence[Any]) -> Any:
        """Mean of post-processed outputs (test-time augmentation views)."""
        return np.mean(np.stack(values), axis=0)

    def ensemble(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Network outputs of ensemble members -> one output in the network's format (default: the mean)."""
        import torch  # torch: absent from ONNX-only inference installs

        return torch.stack(list(outputs)).mean(0)

    def columns(self, spaces: LabelSpaces) -> list[str]:
        """Its CSV columns, in order."""
        return []

    def row(self, value: Any, spaces: LabelSpaces, to_image: ToImage) -> dict[str, Any]:
        """One face's CSV values from its post-processed output."""
        return {}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numpy, stable)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
