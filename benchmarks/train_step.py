"""Time per training step: facemtl's plain method vs a bare hand-written timm + PyTorch loop.

Both sides train the same backbone with the same five heads, batch and image size, with
AdamW; rounds alternate between the two so machine noise hits both alike, and the table
reports medians. facemtl's side includes everything the trainer does per step (fetching
the batch from the dataset, masks, lr schedule, logs); the bare side trains on a batch
already in memory. Data fetching is also timed alone, to show it is not the bottleneck.

    python benchmarks/train_step.py [--backbone resnet18] [--image-size 64] [--batch-size 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from facemtl.config import load_config
from facemtl.data import already_batched, build_datasets, move_batch
from facemtl.engine.trainer import build_method, build_optimizer, epoch_batches, lr_factor
from facemtl.methods import TrainContext
from facemtl.models import create_backbone


class BareNet(nn.Module):
    """The hand-written reference: backbone, pooled feature, one linear layer per task."""

    def __init__(self, backbone: str, num_expr: int, num_au: int, num_lmk: int, attr_sizes: list[int]) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone)
        width = self.backbone.num_features
        self.expr, self.au, self.va = nn.Linear(width, num_expr), nn.Linear(width, num_au), nn.Linear(width, 2)
        self.lmk = nn.Linear(width, 2 * num_lmk)
        self.attr = nn.ModuleList(nn.Linear(width, n) for n in attr_sizes)

    def forward(self, x: torch.Tensor) -> dict:
        feat = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return {"expr": self.expr(feat), "au": self.au(feat), "va": torch.tanh(self.va(feat)),
                "lmk": self.lmk(feat), "attr": [head(feat) for head in self.attr]}


def bare_step(model: BareNet, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    images, labels = batch["image"], batch["labels"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = model((images - mean) / std)
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


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    overrides = [f"model.backbone={args.backbone}", f"data.image_size={args.image_size}",
                 f"train.batch_size={args.batch_size}", f"data.num_train={args.batch_size * 8}",
                 "data.num_val=32", "data.num_test=32", "train.progress=false"]
    config = load_config(None, overrides)
    train_set = build_datasets(config.data, splits=("train",))["train"]
    spaces = train_set.label_spaces
    batches = epoch_batches(len(train_set), args.batch_size, 0, 0)
    method = build_method(config, spaces, TrainContext(len(train_set), config.train.epochs, len(batches)))
    optimizer = build_optimizer(method, config.train)
    method.train()
    device = torch.device("cpu")

    bare = BareNet(args.backbone, len(spaces.expr_classes), len(spaces.au_names), spaces.num_landmarks,
                   [len(c) for c in spaces.attributes.values()])
    bare_optimizer = torch.optim.AdamW(bare.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    bare.train()
    fixed_batch = train_set.__getitems__(batches[0])

    def facemtl_step(i: int) -> None:
        batch = already_batched(train_set.__getitems__(batches[i % len(batches)]))
        factor = lr_factor(i, len(batches), config.train)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        method.train_step(move_batch(batch, device), optimizer)

    def timed(fn, steps: int) -> float:
        start = time.perf_counter()
        for i in range(steps):
            fn(i)
        return (time.perf_counter() - start) / steps

    for i in range(args.warmup):  # allocator and kernel warm-up for both
        facemtl_step(i)
        bare_step(bare, bare_optimizer, fixed_batch)
    ours, theirs, fetch = [], [], []
    for _ in range(args.rounds):
        ours.append(timed(facemtl_step, args.steps))
        theirs.append(timed(lambda i: bare_step(bare, bare_optimizer, fixed_batch), args.steps))
        fetch.append(timed(lambda i: train_set.__getitems__(batches[i % len(batches)]), args.steps))
    result = {
        "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "device": "cpu",
        "facemtl_step_ms": 1000 * statistics.median(ours),
        "bare_step_ms": 1000 * statistics.median(theirs),
        "data_fetch_ms": 1000 * statistics.median(fetch),
    }
    result["ratio"] = result["facemtl_step_ms"] / result["bare_step_ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", nargs="+", default=["tiny", "resnet18"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = []
    for backbone in args.backbone:
        rows.append(run(argparse.Namespace(**{**vars(args), "backbone": backbone})))
    print(f"{'backbone':<10} {'size':>4} {'batch':>5} {'facemtl ms':>10} {'bare ms':>8} {'ratio':>6} {'fetch ms':>8}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['image_size']:>4} {r['batch_size']:>5} {r['facemtl_step_ms']:>10.1f} "
              f"{r['bare_step_ms']:>8.1f} {r['ratio']:>6.3f} {r['data_fetch_ms']:>8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
