"""Multi-process training on ``torch.distributed``: process group, batch sharding, collectives.

facemtl never spawns processes itself: ``torchrun --nproc_per_node=N -m facemtl train ...``
(or ``facemtl train --nproc N``, which re-launches through ``torch.distributed.run``) starts
N processes; each builds the same :class:`~facemtl.engine.Trainer`, which joins the group
from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``):
gloo on CPU, NCCL on CUDA with one GPU per process.

How N processes stay one run:

- every process plans the same global batches (seeded by (seed, epoch)) and trains on
  every N-th sample of each (:func:`shard_batches`): the global batch stays
  ``train.batch_size`` and a step sees the same samples as a single-process step;
- the method's ``training_step`` runs under ``DistributedDataParallel``
  (:func:`wrap_training_step`), whose backward averages the gradients; a method that
  back-propagates outside ``training_step`` (manual optimisation: MAL) has its gradients
  averaged before ``optimizer.step`` by the trainer, and must average any gradient it
  takes itself (MAL's meta-gradient) with :func:`all_reduce_mean`;
- per-sample method state (SCN's relabels, DACL's centre step) is computed from
  :func:`gather_cat`-ed tensors, identically in every process;
- buffers (BatchNorm statistics, per-process epoch sums) are broadcast from rank 0 at
  every epoch end (:func:`broadcast_buffers`), before validation and checkpoints;
- only rank 0 writes files (:func:`is_main`).

In a single process every helper is the identity or a no-op, so methods call them unconditionally.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facemtl.errors import FacemtlError


def world_size() -> int:
    """Number of training processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group when this is one of several processes; return this process's device.

    CUDA runs use GPU ``LOCAL_RANK`` and NCCL; CPU runs use gloo.
    """
    if launched_world_size() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def cleanup(finished: bool = True) -> None:
    """Leave the process group (end of a distributed run).

    ``finished``: every process got here normally, so they first wait for each other (a
    process that failed must not wait: its peers may be stuck in a collective). Call it
    after dropping the :func:`wrap_training_step` wrapper: DDP's reducer keeps the group alive, and a gloo
    group destroyed only at interpreter exit can abort the process (SIGABRT,
    "terminate called without an active exception"), failing a run that had finished.
    """
    if dist.is_available() and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()


def shard_batches(batches: list[list[int]], rank_: int | None = None, world: int | None = None) -> list[list[int]]:
    """This process's part of each global batch: every ``world``-th sample, starting at ``rank``.

    Strided rather than contiguous, so a batch made of per-task sub-batches
    (``data.batching=per_task``) gives every process its share of each task.

    Raises:
        FacemtlError: when a batch has fewer samples than there are processes.
    """
    world = world_size() if world is None else world
    rank_ = rank() if rank_ is None else rank_
    if world == 1:
        return batches
    small = [len(b) for b in batches if len(b) < world]
    if small:
        raise FacemtlError(
            f"a training batch of {small[0]} samples cannot be split over {world} processes; "
            f"use train.batch_size >= {world} and at least that many training samples"
        )
    return [batch[rank_::world] for batch in batches]


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over processes, in place (returned for chaining)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
        tensor /= world_size()
    return tensor


def mean_logs(logs: dict[str, float]) -> dict[str, float]:
    """Scalar logs averaged over processes (every process must log the same keys)."""
    if world_size() == 1 or not logs:
        return logs
    values = all_reduce_mean(torch.tensor([float(logs[k]) for k in logs], dtype=torch.float64, device=_device()))
    return dict(zip(logs, values.tolist()))


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over processes, in one flat all-reduce.

    A parameter with a gradient in any process gets the average (zeros counted where it had
    none); one without a gradient anywhere keeps ``None`` (so optimisers still skip it).
    """
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=_device())
    dist.all_reduce(present)
    params = [p for p, seen in zip(params, present.tolist()) if seen]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = all_reduce_mean(torch.cat([p.grad.reshape(-1) for p in params]))
    for p, chunk in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(chunk.view_as(p.grad))


def gather_cat(tensor: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """Every process's ``tensor`` concatenated along dim 0 in rank order (lengths may differ).

    With ``grad=True`` the result stays differentiable (``torch.distributed.nn``): a loss
    computed identically in every process from the gathered tensor then gets, after DDP's
    gradient averaging, exactly the single-process gradient.
    """
    world = world_size()
    if world == 1:
        return tensor
    is_bool = tensor.dtype == torch.bool
    local = tensor.to(torch.uint8) if is_bool else tensor  # collectives do not all take bool
    length = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    sizes = [int(n) for n in lengths]
    pad = max(sizes) - local.shape[0]
    if pad:
        local = torch.cat([local, local.new_zeros((pad, *local.shape[1:]))])
    if grad:
        from torch.distributed.nn.functional import all_gather as all_gather_autograd

        parts = list(all_gather_autograd(local))
    else:
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
    out = torch.cat([part[:n] for part, n in zip(parts, sizes)])
    return out.bool() if is_bool else out


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, epoch sums, ...) into every process."""
    if world_size() == 1:
        return
    for buffer in module.buffers():
        if buffer.dtype == torch.bool:
            carrier = buffer.to(torch.uint8)
            dist.broadcast(carrier, src=0)
            buffer.copy_(carrier.bool())
        else:
            dist.broadcast(buffer, src=0)


class DDPStep:
    """``method.training_step`` routed through DDP; ``ran`` tells whether it ran since it was last cleared."""

    def __init__(self, ddp: DistributedDataParallel) -> None:
        self.ddp = ddp
        self.ran = False

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.ran = True
        return self.ddp(batch)


def wrap_training_step(method: nn.Module, device: torch.device) -> DDPStep:
    """``method.training_step`` run under ``DistributedDataParallel``; the method is not changed.

    DDP averages the gradients of what its forward computed. A Method's ``forward(batch)``
    is its ``training_step(batch) -> {"loss", "logs"}``, so DDP wraps the whole method (the
    network *and* what the method adds: SCN's importance branch, DACL's attention net); the
    trainer hands the returned callable to ``method.train_step`` as its ``forward``.
    Parameters without gradients and modules kept outside the module tree (a distillation
    teacher) are not part of DDP. ``find_unused_parameters``: heads switched off (TCDCN) and
    DACL's centres (own update) get no gradient in a step. Buffers are not broadcast every
    step (:func:`broadcast_buffers` does it at epoch ends). Drop the returned object to
    release DDP (it holds the process group).
    """
    ddp = DistributedDataParallel(
        method, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True, **_no_per_step_buffer_sync(),
    )
    return DDPStep(ddp)


def _no_per_step_buffer_sync() -> dict[str, bool]:
    # torch >= 2.14 renamed broadcast_buffers (deprecated, FutureWarning) to forward_sync_buffers;
    # its sync at construction is harmless here: every process starts from the same weights.
    parameters = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


def _device() -> torch.device:
    """Where collective tensors live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
