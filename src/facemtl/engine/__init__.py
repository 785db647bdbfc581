"""Training loop, checkpoints and evaluation."""

from facemtl.engine.evaluate import evaluate, primary_scores, selection_score
from facemtl.engine.trainer import Trainer, build_method
from facemtl.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "Checkpoint", "Trainer", "build_method", "evaluate", "load_checkpoint",
    "primary_scores", "save_checkpoint", "selection_score",
]
