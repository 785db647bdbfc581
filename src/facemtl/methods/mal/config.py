"""MAL's options: every value the paper does not give is a documented, configurable default."""

from __future__ import annotations

from dataclasses import dataclass

from facemtl.config import MethodConfig
from facemtl.errors import FacemtlError
from facemtl.losses.meta import NORMALIZATIONS

_CHOICES = {
    "normalize": NORMALIZATIONS,
    "virtual_step": ("all", "heads"),
    "meta_optimizer": ("adam", "sgd"),
    "hypergradient": ("autograd", "difference"),
}

#: parts of ``method.meta_input``
META_INPUTS = ("feat", "loss", "dynamics", "alignment")


@dataclass
class MALConfig(MethodConfig):
    """MAL options (methods.md §1; the recommended recipe: docs/benchmarks.md, MAL, "Verdict")."""

    name: str = "mal"
    meta_size: int = 256  # K: AU-labelled training faces drawn as the meta set
    # true: the meta faces only serve the meta-test (an unbiased meta set, never fitted by theta);
    # false: they also stay in the base stream, so no AU face is lost to the meta set (the paper
    # takes it from the training fold and does not say whether it is also trained on)
    meta_holdout: bool = True
    meta_batch_size: int = 32  # meta-test batch drawn from the meta set each iteration
    meta_lr: float = 1e-3  # beta, lr of the meta-net's optimiser
    meta_optimizer: str = "adam"  # adam (Meta-Weight-Net) | sgd
    meta_weight_decay: float = 0.0
    meta_hidden: int = 100  # meta-net width: d -> hidden -> outputs, sigmoid
    # '+'-joined parts: feat (the paper's g(f(x))), loss (Meta-Weight-Net: each face's AU and expression
    # losses), dynamics (each face's training dynamics: mean and std over its visits so far of the probability
    # the model gives its AU labels and its expression label, as in dataset cartography), alignment (each
    # face's mean alignment with the meta gradient over its past visits; needs hypergradient: difference)
    meta_input: str = "feat"
    # standardise each input column over the base batch (mean 0, std 1): features and losses have
    # drifting, unequal scales, and the meta-net's sigmoid saturates on large inputs (its gradient then vanishes)
    meta_standardize: bool = False
    weight_au: bool = True  # also weight AU samples; false fixes their weights at 1
    # epochs whose real steps keep every weight at 1 (the fixed task weights) while the meta-net already
    # learns and the per-face histories fill; the learned weights apply from then on. Why: a face lowered
    # before the model has learned it keeps a low confidence history *because* it is lowered, so a
    # history-based weight applied from the start confirms itself (docs/benchmarks.md, "What a real input lacks")
    weight_from_epoch: int = 0
    # batch: sum(w l)/n | sum: sum(w l)/sum(w) | none: sum(w l) | relative: batch / mean weight over both tasks
    normalize: str = "batch"
    virtual_step: str = "all"  # parameters taking the virtual step: all | heads (+ last backbone stage)
    inner_lr: float = 0.0  # alpha; 0 = the real optimiser's current lr (first group)
    # autograd: backprop through the virtual step (second order); difference: the same one-step
    # hypergradient from the meta gradient at theta* and one extra forward (MALMethod.difference_surrogate)
    hypergradient: str = "autograd"
    difference_step: float = 1e-3  # difference: norm h of the parameter shift theta + h * g*/|g*|
    meta_seed: int = 0  # seeds the meta-set draw and the meta batches

    def check(self) -> None:
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise FacemtlError(f"method.{key}={getattr(self, key)!r} is not valid; choose from: {', '.join(choices)}")
        parts = self.meta_input.split("+")
        if not parts or len(set(parts)) != len(parts) or not set(parts) <= set(META_INPUTS):
            raise FacemtlError(f"method.meta_input={self.meta_input!r} is not valid; join distinct parts of "
                               f"{', '.join(META_INPUTS)} with '+' (e.g. feat+loss)")
        if "alignment" in parts and self.hypergradient != "difference":
            raise FacemtlError("method.meta_input part alignment needs method.hypergradient=difference "
                               "(the per-face alignments come from its forward difference)")
        if self.weight_from_epoch < 0:
            raise FacemtlError(f"method.weight_from_epoch={self.weight_from_epoch} must be >= 0")
        for key in ("meta_size", "meta_batch_size", "meta_hidden"):
            if getattr(self, key) < 1:
                raise FacemtlError(f"method.{key}={getattr(self, key)} must be at least 1")
        if self.difference_step <= 0:
            raise FacemtlError(f"method.difference_step={self.difference_step} must be > 0")
        if self.meta_lr < 0 or self.inner_lr < 0:
            raise FacemtlError("method.meta_lr and method.inner_lr must be >= 0")
