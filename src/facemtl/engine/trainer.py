"""The one training loop. Methods plug in through :class:`facemtl.methods.Method`.

A run folder holds ``config.yaml``, ``label_spaces.json``, ``log.csv`` (one row per epoch),
``checkpoints/last.safetensors`` (resumable: weights, optimiser, RNG, loop position) and
``checkpoints/best.safetensors`` (best validation score; never selected on test), and at
the end ``metrics.json`` with the best checkpoint's validation and test metrics.

Resume is exact: batches come from a permutation seeded by ``(train.seed, epoch)``, so a
run killed at any checkpoint and resumed ends with the same weights as one never killed.

Under ``torchrun`` (or ``facemtl train --nproc N``) each process trains its share of every
global batch under DDP and only rank 0 writes; see :mod:`facemtl.distributed`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemtl import distributed
from facemtl.config import Config, TrainConfig
from facemtl.data import FaceDataset, already_batched, build_datasets, move_batch
from facemtl.data.sampling import plan_epoch
from facemtl.device import resolve_device
from facemtl.engine.evaluate import evaluate_sharded, primary_scores, selection_score
from facemtl.engine.run_lock import check_free, hold
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import load_checkpoint, load_model_state, replace_durably, save_checkpoint
from facemtl.methods import METHODS, Method, TrainContext
from facemtl.methods.base import StepForward
from facemtl.progress import progress_bar
from facemtl.tasks.network import build_network


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, steps_per_epoch: int, train: TrainConfig) -> float:
    """Multiplier of the base lr at a global step: linear warm-up, then cosine, step, exponential or constant."""
    warmup = train.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if train.scheduler == "cosine":
        total = max(train.epochs * steps_per_epoch - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / total))
    if train.scheduler == "step":
        return train.gamma ** (step // (train.step_epochs * steps_per_epoch))
    if train.scheduler == "exponential":  # once per epoch, as torch's ExponentialLR in SCN's code
        return train.gamma ** (step // steps_per_epoch)
    return 1.0


def build_optimizer(method: Method, train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD over the method's parameter groups; a group may set its own ``lr``.

    Each group remembers its ``base_lr``; groups with ``scheduled: False`` keep it constant.
    """
    groups = method.param_groups(train)
    for group in groups:
        group.setdefault("lr", train.lr)
        group["base_lr"] = group["lr"]
        group.setdefault("scheduled", True)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    if train.optimizer == "adam":  # L2-coupled weight decay, as the official SCN code
        return torch.optim.Adam(groups, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def build_method(
    config: Config, label_spaces: Any, context: TrainContext, method_class: type[Method] | None = None
) -> Method:
    """Network plus the configured method around it.

    ``method_class``: a :class:`Method` subclass to build instead of the registered
    ``config.method.name`` (it takes that name's config section): how a benchmark trains its
    own variant of a method without registering it in the library.
    """
    model = config.model
    net = build_network(
        model.backbone, model.tasks, label_spaces, model.pretrained, model.drop_rate, model.branch_tasks,
        va_bins=model.va_bins, va_bin_values=model.va_bin_values,
    )
    return (method_class or METHODS.get(config.method.name))(net, config.method, context)


def autocast_forward(forward: StepForward, device_type: str) -> StepForward:
    """``forward`` (a method's ``training_step``: forward and loss) under bf16 autocast; backward and
    step stay fp32. bf16 keeps fp32's exponent range, so no loss scaling is needed; CPUs run it too.
    """

    def autocast_step(batch: dict[str, Any]) -> dict[str, Any]:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return forward(batch)

    return autocast_step


def _write_atomic(path: Path, text: str) -> None:
    if not distributed.is_main():  # one writer per run: rank 0
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    replace_durably(tmp, path)


class Trainer:
    """Trains ``config`` into ``out_dir``; ``resume=True`` continues from ``checkpoints/last``.

    Args:
        config: the resolved run configuration.
        out_dir: the run folder (created; must not already hold a run unless resuming).
        resume: continue the run found in ``out_dir``.
        datasets: the splits to train on, ``{"train", "val"[, "test"]}`` (``test`` is only
            evaluated at the end); None builds them from ``config.data``. Built outside, a
            caller can reuse decoded splits across runs or train on its own datasets.
        method_class: a :class:`Method` subclass to train instead of ``config.method.name``'s
            (see :func:`build_method`).
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        resume: bool = False,
        datasets: Mapping[str, FaceDataset] | None = None,
        method_class: type[Method] | None = None,
    ) -> None:
        if not str(out_dir).strip():
            raise FacemtlError("the output folder is empty; pass --out DIR")
        self.config = config
        self.out_dir = Path(out_dir)
        self.last_path = self.out_dir / "checkpoints" / "last.safetensors"
        self.best_path = self.out_dir / "checkpoints" / "best.safetensors"
        check_free(self.out_dir)  # a live writer is named now, not after the data has loaded
        if self.last_path.exists() and not resume:
            raise FacemtlError(f"{self.out_dir} already holds a run; add --resume to continue it or choose another --out")
        if resume and not self.last_path.exists():
            raise FacemtlError(f"--resume: no {self.last_path} to resume from")
        self.resume = resume
        train = config.train
        if train.threads > 0:
            torch.set_num_threads(train.threads)
        seed_everything(train.seed)
        self.device = distributed.setup(resolve_device(train.device))  # joins torchrun's group, if any
        self.datasets = dict(datasets) if datasets is not None else build_datasets(config.data)
        self.train_set = self.datasets["train"]
        # the schedule counts the steps the epoch plan really has (per_task plans are shorter)
        self.steps_per_epoch = len(plan_epoch(self.train_set, config.data, config.model.tasks, train.batch_size, 0, 0))
        context = TrainContext(len(self.train_set), train.epochs, self.steps_per_epoch)
        self.method = build_method(config, self.train_set.label_spaces, context, method_class).to(self.device)
        self.method.on_fit_start({split: data for split, data in self.datasets.items() if split != "test"})
        self._speed_options()
        self.optimizer = build_optimizer(self.method, train)
        self.forward = self._training_forward()
        self.tasks = self.method.net.tasks
        self.preprocess = {
            "image_size": config.data.image_size,
            "input": "RGB, float in [0, 1], [B, 3, H, W]; the model normalises internally",
            "template_5pt": self.train_set.landmark_template(),
        }
        # Loop position and history; saved in every checkpoint so resume loses nothing.
        self.state: dict[str, Any] = {
            "epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": None,
            "history": [], "sums": {}, "count": 0, "seconds": 0.0,
        }

    # -- checkpoints -------------------------------------------------------------------
    def _save(self, path: Path, resumable: bool) -> None:
        if not distributed.is_main():
            return
        save_checkpoint(
            path,
            self.method.state_dict(),
            config_yaml=self.config.to_yaml(),
            label_spaces=self.train_set.label_spaces,
            tasks=self.tasks,
            trainer_state=self.state,
            preprocess=self.preprocess,
            optimizer_state=self.optimizer.state_dict() if resumable else None,
            rng_state=torch.get_rng_state() if resumable else None,
        )

    def _restore(self) -> None:
        checkpoint = load_checkpoint(self.last_path)
        load_model_state(self.method, checkpoint, self.tasks)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        torch.set_rng_state(checkpoint.rng_state)
        self.state = checkpoint.trainer_state
        if distributed.is_main():
            print(f"resumed {self.out_dir} at epoch {self.state['epoch'] + 1}, batch {self.state['batch']}")

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train, validate each epoch, keep the best checkpoint, then write ``metrics.json``.

        Rank 0 holds the run folder's lock (:mod:`facemtl.engine.run_lock`) meanwhile.
        """
        with hold(self.out_dir, enabled=distributed.is_main()):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._restore()
        else:
            _write_atomic(self.out_dir / "config.yaml", self.config.to_yaml())
            _write_atomic(self.out_dir / "label_spaces.json", self.train_set.label_spaces.to_json())
        train = self.config.train
        while self.state["epoch"] < train.epochs:
            started = time.perf_counter()
            self._train_epoch()
            row = self._end_epoch(time.perf_counter() - started)
            self._print_epoch(row)
        return self.final_metrics()

    def _train_epoch(self) -> None:
        train, epoch = self.config.train, self.state["epoch"]
        self.train_set.set_epoch(epoch)  # a mix redraws its weighted sample; other datasets ignore it
        batches = plan_epoch(self.train_set, self.config.data, self.tasks, train.batch_size, train.seed, epoch)[self.state["batch"]:]
        batches = distributed.shard_batches(batches)  # this process's share of each global batch
        loader = DataLoader(
            self.train_set, batch_sampler=batches, collate_fn=already_batched,
            num_workers=train.num_workers, pin_memory=self.device.type == "cuda",
            # Its own generator: a loader otherwise draws its worker seed from the global
            # RNG, so a resumed epoch would shift every later dropout mask.
            generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch),
        )
        self.method.train()
        show = train.progress and distributed.is_main()
        # off a terminal the bar prints nothing: the epoch line (_print_epoch) is the log's progress
        bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{train.epochs}", show=show, lines=False, leave=False)
        for batch in bar:
            self._set_lr()
            logs = self.method.train_step(self._to_device(batch), self.optimizer, train.grad_clip, self.forward)
            logs = distributed.mean_logs(logs)  # identical sums in every process: resume needs no reduction
            for key, value in logs.items():
                self.state["sums"][key] = self.state["sums"].get(key, 0.0) + value
            self.state["count"] += 1
            self.state["step"] += 1
            self.state["batch"] += 1
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            if train.checkpoint_every and self.state["step"] % train.checkpoint_every == 0:
                self._save(self.last_path, resumable=True)

    def _set_lr(self) -> None:
        factor = lr_factor(self.state["step"], self.steps_per_epoch, self.config.train)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * (factor if group["scheduled"] else 1.0)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = move_batch(batch, self.device)
        if self.config.train.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    # -- speed options and DDP ---------------------------------------------------------
    def _speed_options(self) -> None:
        """``train.channels_last``, ``sync_bn``, ``compile``: other kernels, same weights and state_dict keys."""
        train = self.config.train
        if train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if train.sync_bn and distributed.world_size() > 1:
            if self.device.type != "cuda":
                raise FacemtlError("train.sync_bn=true needs CUDA (torch's SyncBatchNorm has no CPU kernel); set it false")
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)  # reuses the parameters and buffers
        if train.compile:
            self.method.net.compile()  # in place, unlike torch.compile(net): no "_orig_mod." in checkpoints

    def _training_forward(self) -> StepForward:
        """``method.training_step`` under DDP (several processes) and bf16 autocast (``train.amp``):
        the ``forward`` handed to every ``method.train_step``; the method itself is not changed.

        Autocast covers the forward and the loss, not backward or the optimiser step, as
        PyTorch recommends; a method that forwards outside ``training_step`` (MAL's
        functional passes) runs those in fp32.
        """
        self.ddp_step: distributed.DDPStep | None = None
        forward: StepForward = self.method.training_step
        if distributed.world_size() > 1:
            self.ddp_step = forward = distributed.wrap_training_step(self.method, self.device)
            self.optimizer.register_step_pre_hook(self._average_manual_grads)
        if self.config.train.amp == "bf16":
            forward = autocast_forward(forward, self.device.type)
        return forward

    def close(self, finished: bool = True) -> None:
        """Release DDP and leave the process group; every process calls it once, after :meth:`fit`.

        ``finished``: :meth:`fit` returned in this process (see :func:`distributed.cleanup`).
        A single-process trainer has nothing to release.
        """
        if self.ddp_step is not None:
            self.ddp_step = self.forward = None  # DDP holds the process group: release it before leaving
        distributed.cleanup(finished)

    def _average_manual_grads(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        # A step whose backward did not come from DDP's forward (a method's own train_step,
        # MAL) has per-process gradients: average them before the optimiser uses them.
        assert self.ddp_step is not None
        if not self.ddp_step.ran:
            distributed.all_reduce_grads(p for group in optimizer.param_groups for p in group["params"])
        self.ddp_step.ran = False

    def _end_epoch(self, seconds: float) -> dict[str, Any]:
        epoch = self.state["epoch"]
        # Per-process buffers (BatchNorm statistics of each shard, epoch sums) become rank 0's,
        # so the epoch-end schedule, validation and checkpoint agree in every process.
        distributed.broadcast_buffers(self.method)
        method_logs = self.method.on_epoch_end(epoch)
        val = self.evaluate_split("val")
        score = selection_score(val, self.config.train.select_tasks)
        count = max(self.state["count"], 1)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": self.state["step"], "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v / count for k, v in self.state["sums"].items()})
        row.update(method_logs)
        row.update({f"samples_{name}": count for name, count in self.train_set.composition().items()})
        row.update(_flat_scores(val))
        row["val_score"] = score
        self.state["seconds"] += seconds
        row["seconds"] = round(self.state["seconds"], 1)
        self.state.update(epoch=epoch + 1, batch=0, sums={}, count=0)
        self.state["history"].append(row)
        if self.state["best_score"] is None or score > self.state["best_score"]:
            self.state.update(best_score=score, best_epoch=epoch + 1)
            self._save(self.best_path, resumable=False)
        self._save(self.last_path, resumable=True)
        self._write_log()
        return row

    def _write_log(self) -> None:
        columns: list[str] = []
        for row in self.state["history"]:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.state["history"])
        _write_atomic(self.out_dir / "log.csv", buffer.getvalue())

    def _print_epoch(self, row: dict[str, Any]) -> None:
        if not self.config.train.progress or not distributed.is_main():
            return
        parts = [f"epoch {row['epoch']}/{self.config.train.epochs}", f"loss {row.get('train_loss', float('nan')):.3f}"]
        parts += [f"{k[4:]} {v:.3f}" for k, v in row.items() if k.startswith("val_")]
        print("  ".join(parts) + f"  ({row['seconds']:.0f}s)", flush=True)

    # -- evaluation --------------------------------------------------------------------
    def evaluate_split(self, split: str) -> dict[str, Any]:
        """Metrics of the current weights on ``val`` or ``test``."""
        self.method.eval()
        with torch.no_grad():
            return evaluate_sharded(
                self.method.predict, self.datasets[split], self.tasks, self.device, self.config.train.eval_batch_size
            )

    def final_metrics(self) -> dict[str, Any]:
        """Reload the best-on-validation weights, evaluate val and test, write ``metrics.json``."""
        distributed.barrier()  # rank 0 has written the best checkpoint
        load_model_state(self.method, load_checkpoint(self.best_path), self.tasks)
        results = {"val": self.evaluate_split("val")}
        if "test" in self.datasets and len(self.datasets["test"]):
            results["test"] = self.evaluate_split("test")
        results["best_epoch"] = self.state["best_epoch"]
        _write_atomic(self.out_dir / "metrics.json", json.dumps(results, indent=2))
        return results


def _flat_scores(results: dict[str, Any]) -> dict[str, float]:
    return {f"val_{task}": value for task, value in primary_scores(results).items()}
