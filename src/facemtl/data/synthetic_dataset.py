"""The synthetic FACS benchmark as a registered dataset with train/val/test splits.

Corruptions a researcher asks for are applied to the *training* split only, so model
selection and evaluation always see clean, fully labelled data:

- ``label_noise``: that exact fraction of training expression labels is flipped to a
  uniformly drawn *other* class; ``info.expr_clean`` / ``info.expr_flipped`` record it.
  ``noise_mode: uniform`` picks the flipped faces uniformly (the usual symmetric-noise
  benchmark: a flipped face looks exactly like a clean one); ``ambiguous`` picks them with
  probability growing as the expression weakens (weight ``(1.1 - intensity)^2``), as real
  annotators disagree most on subtle faces — the kind of noise SCN's image-conditioned
  importance can see.
- ``label_fraction.<task>``: only that fraction of training samples keep the task's labels.

``info.expr_intensity`` gives each face's expression intensity (0 for neutral): how hard its
expression is to read, for benchmarks that ask which faces a method down-weights.

``imbalance`` skews the expression frequencies geometrically (class 0 the most frequent,
the last class ``imbalance`` times rarer) in every split, as real datasets are.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from facemtl.config import DataConfig
from facemtl.data.dataset import FaceDataset
from facemtl.data.synthetic import SYNTHETIC_AU_IDS, SyntheticFaces, generate_faces
from facemtl.labels import DEFAULT_ATTRIBUTES, EXPR_CLASSES_8, LabelSpaces, au_name
from facemtl.registry import DATASETS

SPLITS = ("train", "val", "test")


def synthetic_label_spaces(num_expr_classes: int = 7, num_landmarks: int = 5) -> LabelSpaces:
    return LabelSpaces(
        expr_classes=EXPR_CLASSES_8[:num_expr_classes],
        au_names=tuple(au_name(a) for a in SYNTHETIC_AU_IDS),
        num_landmarks=num_landmarks,
        attributes=dict(DEFAULT_ATTRIBUTES),
    )


def class_probabilities(num_classes: int, imbalance: float) -> np.ndarray:
    """Geometric class frequencies with ratio ``imbalance`` between first and last class."""
    probs = float(imbalance) ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    return probs / probs.sum()


@lru_cache(maxsize=8)
def _generate(num: int, image_size: int, seed: int, classes: int, probs: tuple[float, ...], difficulty: float) -> SyntheticFaces:
    # Cached so tests and benchmarks that rebuild the same split do not redraw it.
    return generate_faces(num, image_size, seed, classes, list(probs), difficulty)


def _split_seed(seed: int, split: str) -> int:
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def _flip_labels(
    expr: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    noisy = expr.copy()
    probs = None if weights is None else weights / weights.sum()
    chosen = rng.choice(len(expr), size=round(fraction * len(expr)), replace=False, p=probs)
    offsets = rng.integers(1, num_classes, size=len(chosen))  # never the same class
    noisy[chosen] = (expr[chosen] + offsets) % num_classes
    return noisy


def _keep_mask(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    keep = np.zeros(n, dtype=bool)
    keep[rng.choice(n, size=round(fraction * n), replace=False)] = True
    return keep


def build_split(config: DataConfig, split: str) -> FaceDataset:
    """Generate one split of the synthetic benchmark as a :class:`FaceDataset`."""
    num = {"train": config.num_train, "val": config.num_val, "test": config.num_test}[split]
    probs = tuple(class_probabilities(config.num_expr_classes, config.imbalance).tolist())
    faces = _generate(num, config.image_size, _split_seed(config.seed, split), config.num_expr_classes, probs, config.difficulty)
    spaces = synthetic_label_spaces(config.num_expr_classes, config.num_landmarks)
    labels = {
        "expr": faces.expr.astype(np.int64),
        "au": faces.au.astype(np.float32),
        "va": faces.va.astype(np.float32),
        "lmk": (faces.lmk5 if config.num_landmarks == 5 else faces.lmk68).astype(np.float32),
        "attr": faces.attr.astype(np.int64),
    }
    mask = {
        "expr": np.ones(num, bool),
        "au": np.ones(faces.au.shape, bool),
        "va": np.ones(num, bool),
        "lmk": np.ones(num, bool),
        "attr": np.ones(faces.attr.shape, bool),
    }
    info = {"expr_clean": labels["expr"].copy(), "expr_flipped": np.zeros(num, bool),
            "expr_intensity": faces.intensity.astype(np.float32)}
    if split == "train":
        rng = np.random.default_rng(_split_seed(config.seed, split) + 1)
        if config.label_noise > 0:
            weights = (1.1 - faces.intensity.astype(np.float64)) ** 2 if config.noise_mode == "ambiguous" else None
            labels["expr"] = _flip_labels(labels["expr"], config.label_noise, config.num_expr_classes, rng, weights)
            info["expr_flipped"] = labels["expr"] != info["expr_clean"]
        for task, fraction in config.label_fraction.items():
            if fraction < 1.0:
                keep = _keep_mask(num, fraction, rng)
                mask[task] = mask[task] & keep.reshape((num,) + (1,) * (mask[task].ndim - 1))
    return FaceDataset(faces.images, labels, mask, spaces, info)


@DATASETS.register("synthetic")
def synthetic(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict[str, FaceDataset]:
    """The built-in synthetic FACS benchmark (all five tasks labelled)."""
    return {split: build_split(config, split) for split in splits}
