"""Per-face histories: what the meta-net reads about a face beyond one visit (``meta_input`` parts
``dynamics`` and ``alignment``).

Why: one visit's loss or alignment is too noisy to tell a corrupted auxiliary label from a hard
clean one; averaged over a face's visits it is not (docs/benchmarks.md, MAL, "Per-face histories").
"""

from __future__ import annotations

import torch
from torch import nn

from facemtl.distributed import gather_cat

#: tasks whose per-face histories are kept, in column order
HISTORY_TASKS = ("au", "expr")


class FaceHistory(nn.Module):
    """Per training face and column, the visits, sum and sum of squares of a value recorded at each
    of the face's visits (a buffer: checkpoints and resume keep it).

    Every process records every process's faces, so the histories stay identical under DDP (a
    face's visits may fall to different processes from one epoch to the next).

    Args:
        num_faces: training faces (``batch["index"]`` runs over ``range(num_faces)``); 0 when unused.
        columns: values recorded per visit.
    """

    def __init__(self, num_faces: int, columns: int) -> None:
        super().__init__()
        self.register_buffer("sums", torch.zeros(num_faces, columns, 3))

    @torch.no_grad()
    def record(self, index: torch.Tensor, values: torch.Tensor, visited: torch.Tensor) -> None:
        """Add one visit of ``values [B, columns]`` where ``visited [B, columns]`` (0/1) is set."""
        columns = values.shape[1]
        index = gather_cat(index.to(self.sums.device))
        both = gather_cat(torch.cat([values, visited], 1).detach().to(self.sums.device, self.sums.dtype))
        values, visited = both[:, :columns], both[:, columns:]
        values = torch.where(visited.bool(), values, 0.0)  # an unvisited column's value may be anything (nan included)
        self.sums.index_add_(0, index, torch.stack([visited, values, values ** 2], dim=2))

    def mean_std(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, columns], [B, columns])``: the mean and std over each face's visits (0 without visits),
        for the faces of ``index`` (``None``: every face, ``[num_faces, columns]``)."""
        history = self.sums if index is None else self.sums[index.to(self.sums.device)]
        visits = history[..., 0].clamp_min(1)
        mean = history[..., 1] / visits
        std = (history[..., 2] / visits - mean ** 2).clamp_min(0).sqrt()
        device = self.sums.device if index is None else index.device
        return mean.to(device), std.to(device)

    def visited(self) -> torch.Tensor:
        """``[num_faces, columns]`` bool: whether each face has a recorded visit in each column."""
        return self.sums[..., 0] > 0


def labelled_samples(mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: samples with at least one label in a task's mask (``[B]`` or ``[B, A]``)."""
    return mask.reshape(len(mask), -1).bool().any(dim=1)


def per_face_au_mean(entries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the mean of ``entries [B, A]`` over each face's labelled AUs (0 for a face with none)."""
    return entries.sum(1) / mask.sum(1).clamp_min(1)


def per_face(values: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, T], [B, T])`` for the tasks of :data:`HISTORY_TASKS`: each face's value (AU: the mean over
    its labelled AUs) and whether it has that task's label.

    Args:
        values: task -> per-entry values (``au [B, A]``, ``expr [B]``).
        mask: task -> the batch's label mask of the same shape.
    """
    masks = {task: mask[task].reshape(len(mask[task]), -1).float() for task in HISTORY_TASKS}
    face_values = [per_face_au_mean(values[task].reshape(len(masks[task]), -1) * masks[task], masks[task])
                   for task in HISTORY_TASKS]
    return torch.stack(face_values, 1), torch.stack([masks[task].amax(1) for task in HISTORY_TASKS], 1)


def label_confidence(entries: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """This visit's label confidences (``dynamics``), ``([B, T], [B, T] labelled)``: per task the probability
    the model gives the face's label, ``exp(-loss)`` (AU: the mean over its labelled AUs).

    Why: a face whose label the model keeps giving a low probability is likely mislabelled, while a
    hard face with a correct label is learned over the visits (its confidence rises and varies), which
    one visit's loss cannot show (dataset cartography, Swayamdipta et al., EMNLP 2020).
    """
    return per_face({task: torch.exp(-loss.detach()) for task, loss in entries.items()}, mask)


def batch_standardized(derivative: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """This visit's alignment with the meta gradient, <grad l_i, g*> (``alignment``), ``([B, T], [B, T])``,
    each column standardised over the batch's faces with that task's label (a lone face is left out: it
    has no batch to be standardised against).

    Why: averaged over a face's visits it estimates whether training on that face helps the main task;
    standardising makes visits from early and late training (where |g*| differs by orders of magnitude)
    comparable.
    """
    values, labelled = per_face(derivative, mask)
    for column in range(values.shape[1]):
        rows = labelled[:, column].bool()
        if int(rows.sum()) > 1:
            chosen = values[rows, column]
            values[rows, column] = (chosen - chosen.mean()) / chosen.std().clamp_min(1e-12)
        else:
            labelled[:, column] = 0
    return values, labelled
