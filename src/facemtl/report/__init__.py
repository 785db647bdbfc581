"""Pictures of what a model predicts (the full HTML run report builds on these)."""

from facemtl.report.grid import save_prediction_grid

__all__ = ["save_prediction_grid"]
