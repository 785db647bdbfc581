"""Time per training step: facemtl's plain method vs a bare hand-written timm + PyTorch loop.

Both sides train the same backbone with the same five heads, batch and image size, with
AdamW; rounds alternate between the two so machine noise hits both alike, and the table
reports medians. facemtl's side includes everything the trainer does per step (fetching
the batch from the dataset, copying it to the device, masks, lr schedule, logs); the bare
side trains on a batch already on the device. Data fetching is also timed alone.

``--device cuda`` measures images/s on a GPU, fp32 vs bf16 autocast (``train.amp``), by
default ResNet-18 at 112 and 224 px; ``--channels-last`` and ``--compile`` apply the
trainer's other speed options to both sides.

    python benchmarks/train_step.py [--backbone resnet18] [--image-size 64] [--batch-size 64] [--json out.json]
    python benchmarks/train_step.py --device cuda [--image-size 112 224] [--amp none bf16] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facemtl.config import load_config
from facemtl.data import already_batched, build_datasets, move_batch
from facemtl.data.sampling import epoch_batches
from facemtl.engine.trainer import autocast_forward, build_method, build_optimizer, lr_factor
from facemtl.methods import TrainContext
from facemtl.models import create_backbone
from facemtl.models.multitask import IMAGE_MEAN, IMAGE_STD


class BareNet(nn.Module):
    """The hand-written reference: backbone, pooled feature, one linear layer per task."""

    def __init__(self, backbone: str, num_expr: int, num_au: int, num_lmk: int, attr_sizes: list[int]) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone)
        width = self.backbone.num_features
        self.expr, self.au, self.va = nn.Linear(width, num_expr), nn.Linear(width, num_au), nn.Linear(width, 2)
        self.lmk = nn.Linear(width, 2 * num_lmk)
        self.attr = nn.ModuleList(nn.Linear(width, n) for n in attr_sizes)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict:
        x = (x - self.mean) / self.std
        feat = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return {"expr": self.expr(feat), "au": self.au(feat), "va": torch.tanh(self.va(feat)),
                "lmk": self.lmk(feat), "attr": [head(feat) for head in self.attr]}


def bare_step(model: BareNet, optimizer: torch.optim.Optimizer, batch: dict, amp: str) -> None:
    images, labels = batch["image"], batch["labels"]
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        out = model(images)
        loss = (
            F.cross_entropy(out["expr"], labels["expr"])
            + F.binary_cross_entropy_with_logits(out["au"], labels["au"])
            + F.mse_loss(out["va"], labels["va"])
            + F.l1_loss(out["lmk"] + 0.5, labels["lmk"].flatten(1))
            + sum(F.cross_entropy(o, labels["attr"][:, i]) for i, o in enumerate(out["attr"]))
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timer(device: torch.device) -> Callable[[Callable[[int], None], int], float]:
    def timed(fn: Callable[[int], None], steps: int) -> float:
        if device.type == "cuda":  # kernels run asynchronously: time what has finished
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            fn(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / steps

    return timed


def run(args: argparse.Namespace) -> dict:
    """One table row: ``args.backbone`` at ``args.image_size`` with ``args.amp``."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    overrides = [f"model.backbone={args.backbone}", f"data.image_size={args.image_size}",
                 f"train.batch_size={args.batch_size}", f"data.num_train={args.batch_size * 8}",
                 "data.num_val=32", "data.num_test=32", "train.progress=false"]
    config = load_config(None, overrides)
    train_set = build_datasets(config.data, splits=("train",))["train"]
    spaces = train_set.label_spaces
    batches = epoch_batches(len(train_set), args.batch_size, 0, 0)
    method = build_method(config, spaces, TrainContext(len(train_set), config.train.epochs, len(batches))).to(device)
    bare = BareNet(args.backbone, len(spaces.expr_classes), len(spaces.au_names), spaces.num_landmarks,
                   [len(c) for c in spaces.attributes.values()]).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    method.to(memory_format=memory_format)
    bare.to(memory_format=memory_format)
    if args.compile:  # as train.compile: the network in place
        method.net.compile()
        bare.compile()
    optimizer = build_optimizer(method, config.train)  # after .to(): the trainer's order
    bare_optimizer = torch.optim.AdamW(bare.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    forward = autocast_forward(method.training_step, device.type) if args.amp == "bf16" else None
    method.train()
    bare.train()
    fixed_batch = move_batch(train_set.__getitems__(batches[0]), device)
    fixed_batch["image"] = fixed_batch["image"].contiguous(memory_format=memory_format)
    pin = device.type == "cuda"  # the trainer's DataLoader pins batches for CUDA

    def facemtl_step(i: int) -> None:
        batch = already_batched(train_set.__getitems__(batches[i % len(batches)]))
        if pin:
            batch = {**batch, "image": batch["image"].pin_memory()}
        factor = lr_factor(i, len(batches), config.train)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        batch = move_batch(batch, device)
        batch["image"] = batch["image"].contiguous(memory_format=memory_format)
        method.train_step(batch, optimizer, forward=forward)

    timed = _timer(device)
    for i in range(args.warmup):  # allocator, cuDNN autotuning and compilation for both
        facemtl_step(i)
        bare_step(bare, bare_optimizer, fixed_batch, args.amp)
    ours, theirs, fetch = [], [], []
    for _ in range(args.rounds):
        ours.append(timed(facemtl_step, args.steps))
        theirs.append(timed(lambda i: bare_step(bare, bare_optimizer, fixed_batch, args.amp), args.steps))
        fetch.append(timed(lambda i: train_set.__getitems__(batches[i % len(batches)]), args.steps))
    result = {
        "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
        "facemtl_step_ms": 1000 * statistics.median(ours),
        "bare_step_ms": 1000 * statistics.median(theirs),
        "data_fetch_ms": 1000 * statistics.median(fetch),
    }
    result["ratio"] = result["facemtl_step_ms"] / result["bare_step_ms"]
    result["facemtl_images_s"] = args.batch_size / statistics.median(ours)
    result["bare_images_s"] = args.batch_size / statistics.median(theirs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--backbone", nargs="+", help="default: tiny resnet18 (cpu), resnet18 (cuda)")
    parser.add_argument("--image-size", type=int, nargs="+", help="default: 64 (cpu), 112 224 (cuda)")
    parser.add_argument("--amp", nargs="+", choices=("none", "bf16"), help="default: none (cpu), none bf16 (cuda)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and batches on both sides")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    backbones = args.backbone or (["resnet18"] if cuda else ["tiny", "resnet18"])
    sizes = args.image_size or ([112, 224] if cuda else [64])
    amps = args.amp or (["none", "bf16"] if cuda else ["none"])
    rows = []
    for backbone in backbones:
        for size in sizes:
            for amp in amps:
                cell = {**vars(args), "backbone": backbone, "image_size": size, "amp": amp}
                rows.append(run(argparse.Namespace(**cell)))
    print(f"{'backbone':<10} {'size':>4} {'batch':>5} {'amp':>4} {'facemtl ms':>10} {'bare ms':>8} {'ratio':>6} "
          f"{'facemtl img/s':>13} {'bare img/s':>10} {'fetch ms':>8}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['image_size']:>4} {r['batch_size']:>5} {r['amp']:>4} {r['facemtl_step_ms']:>10.1f} "
              f"{r['bare_step_ms']:>8.1f} {r['ratio']:>6.3f} {r['facemtl_images_s']:>13.0f} {r['bare_images_s']:>10.0f} "
              f"{r['data_fetch_ms']:>8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
