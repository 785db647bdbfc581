"""Training loop, checkpoints and evaluation."""

from facemtl.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from facemtl.engine.evaluate import evaluate, primary_scores, selection_score
from facemtl.engine.trainer import Trainer, build_method

__all__ = [
    "Checkpoint", "Trainer", "build_method", "evaluate", "load_checkpoint",
    "primary_scores", "save_checkpoint", "selection_score",
]
