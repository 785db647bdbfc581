"""Task specs: one object per task (label space, head, loss, metrics, columns)."""
