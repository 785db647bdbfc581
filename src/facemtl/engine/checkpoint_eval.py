"""Metrics of a saved checkpoint on the val and test splits of the data it was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from facemtl.config import Config, config_from_dict
from facemtl.data import build_datasets
from facemtl.device import resolve_device
from facemtl.engine.evaluate import evaluate
from facemtl.engine.trainer import build_method
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import Checkpoint, load_checkpoint, load_model_state
from facemtl.methods import TrainContext


def data_roots(config: Config) -> list[str]:
    """The folders a config's data is read from (every source of a mix), for messages."""
    sources = getattr(config.data.options, "sources", None) or [{"root": config.data.root}]
    return [f"{source.get('name', config.data.name)} at {source.get('root') or '(no root)'}" for source in sources]


def evaluate_checkpoint(path: str, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], Checkpoint]:
    """``{split: {task: metrics}}`` of a checkpoint (file, run folder or ``facemtl_base``) and the checkpoint.

    The val and test splits are rebuilt from the checkpoint's own config (``overrides``
    change it first, e.g. a moved ``data.root``); every weight comes from the checkpoint, so
    its ``model.pretrained`` (a path where it was trained) is not read.

    Raises:
        FacemtlError: when the data cannot be read here (naming where it is expected) or does
            not match the checkpoint's label spaces.
    """
    checkpoint = load_checkpoint(path)
    config = config_from_dict(checkpoint.config, ["model.pretrained=", *overrides])
    try:
        datasets = build_datasets(config.data, splits=("val", "test"))
    except (FacemtlError, OSError, ValueError) as err:
        raise FacemtlError(f"{path}: evaluating rebuilds the val and test splits of the data it was trained on, "
                           f"which cannot be read here ({err}); its data: {', '.join(data_roots(config))} "
                           "(relative to the current folder): run where that is, or move it with --set") from None
    if datasets["val"].label_spaces != checkpoint.label_spaces:
        raise FacemtlError(f"{checkpoint.path}: its label spaces differ from dataset {config.data.name!r}'s")
    method = build_method(config, checkpoint.label_spaces, TrainContext(config.data.num_train, config.train.epochs, 1))
    load_model_state(method, checkpoint, method.net.tasks)
    device = resolve_device(config.train.device)
    method.to(device).eval()
    with torch.no_grad():
        results = {split: evaluate(method.predict, ds, method.net.tasks, device) for split, ds in datasets.items() if len(ds)}
    return results, checkpoint
