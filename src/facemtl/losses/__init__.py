"""Pure, documented loss functions (no modules, no state)."""

from facemtl.losses.masked import (
    attribute_cross_entropy,
    ccc_loss,
    masked_bce,
    masked_cross_entropy,
    masked_mean,
    masked_regression,
)

__all__ = [
    "attribute_cross_entropy",
    "ccc_loss",
    "masked_bce",
    "masked_cross_entropy",
    "masked_mean",
    "masked_regression",
]

from facemtl.losses.rank import rank_regularization, relabel, split_by_importance, weighted_logit_cross_entropy

__all__ += ["rank_regularization", "relabel", "split_by_importance", "weighted_logit_cross_entropy"]

from facemtl.losses.center import center_update_direction, sparse_center_loss

__all__ += ["center_update_direction", "sparse_center_loss"]
