"""Task specs: one object per task owning its label space, head, loss, metrics, outputs and CSV columns.

Importing this package registers the built-in tasks in :data:`facemtl.registry.TASK_SPECS`
(``expr``, ``au``, ``va``, ``lmk``, ``attr``); a new task is one more spec module
(:class:`~facemtl.tasks.base.TaskSpec`) registered the same way. Torch-free to import,
so the ONNX inference path can read specs.
"""

from facemtl.registry import TASK_SPECS, check_tasks, ordered_tasks
from facemtl.tasks import attr, au, expr, lmk, va  # noqa: F401  (each registers its spec)
from facemtl.tasks.base import TaskSpec

__all__ = ["TASK_SPECS", "TaskSpec", "check_tasks", "ordered_tasks", "spec"]


def spec(task: str) -> TaskSpec:
    """The registered spec of ``task`` (an unknown name is a one-line error listing the valid ones)."""
    return TASK_SPECS.get(task)
