"""Softmax only vs centre loss vs DACL on the synthetic benchmark: accuracy and feature compactness.

Four variants under the same budget and seeds, all five tasks trained (the centre losses act
on the expression embedding): ``plain`` (softmax only), ``center`` (DACL with a = 1, i.e.
Wen et al.'s centre loss with the same centre update), ``dacl`` (the attention net on its own
SGD, the default) and ``dacl_main`` (the attention net on the main optimiser, which under
Adam collapses the attention to 0). Reports test accuracy,
macro-F1, the intra/inter-class distance ratio of the test embeddings (mean distance to the
own class mean over mean distance between class means: lower = more compact), and DACL's
attention statistics (mean a, its spread, share of a > 0.5).

    python benchmarks/dacl_features.py --json dacl.json
    python benchmarks/dacl_features.py --seeds 0 --epochs 3     # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from _common import mean_std, run_parallel, train_run

VARIANTS = {
    "plain": ["method.name=plain"],
    "center": ["method.name=dacl", "method.attention=false"],
    "dacl": ["method.name=dacl"],  # the attention net on its own SGD (the official optimiser), the default
    "dacl_main": ["method.name=dacl", "method.attention_optimizer=main"],  # the attention on the main optimiser
}

ATTENTION_KEYS = ("attention", "attention_std", "attention_above_half")  # DACL's last-epoch log; None for the others


def compactness(trainer) -> float:
    """Intra/inter-class distance ratio of the test set's pooled embeddings (best checkpoint)."""
    dataset = trainer.datasets["test"]
    trainer.method.eval()
    feats = []
    with torch.no_grad():
        for start in range(0, len(dataset), 256):
            batch = dataset.__getitems__(list(range(start, min(start + 256, len(dataset)))))
            feats.append(trainer.method.net(batch["image"])["feat"])
    feat, labels = torch.cat(feats), dataset.labels["expr"]
    means = torch.stack([feat[labels == k].mean(0) for k in labels.unique()])
    intra = (feat - means[torch.searchsorted(labels.unique(), labels)]).norm(dim=1).mean()
    return float(intra / torch.pdist(means).mean())


def train_one(job: dict) -> dict:
    overrides = VARIANTS[job["variant"]] + [
        f"data.seed={job['seed']}", f"train.seed={job['seed']}", f"data.num_train={job['num_train']}",
        "data.num_val=1000", "data.num_test=2000", f"data.image_size={job['image_size']}",
        f"train.epochs={job['epochs']}", f"model.backbone={job['backbone']}",
        f"train.optimizer={job['optimizer']}", f"train.lr={job['lr']}",
    ] + (["train.weight_decay=0.0005", "train.momentum=0.9"] if job["optimizer"] == "sgd" else [])
    if job["variant"] != "plain":
        overrides += [f"method.lamb={job['lamb']}", "method.ce_unit_widths=[512,128,64]", "method.pool_size=4"]
    run = train_run(overrides, lambda trainer, metrics, rows: {"ratio": compactness(trainer)})
    rows = run["rows"]
    return {
        **job, "accuracy": run["test"]["expr"]["accuracy"], "macro_f1": run["test"]["expr"]["macro_f1"],
        "intra_inter_ratio": run["ratio"],
        **{key: float(rows[-1][key]) if rows[-1].get(key) else None for key in ATTENTION_KEYS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--num-train", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--lamb", type=float, default=0.01)
    parser.add_argument("--optimizer", default="adamw", help="sgd = the official DACL optimiser (momentum 0.9, decay 5e-4)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    jobs = [{"variant": v, "seed": s, "epochs": args.epochs, "num_train": args.num_train, "image_size": args.image_size,
             "backbone": args.backbone, "lamb": args.lamb, "optimizer": args.optimizer, "lr": args.lr} for s in args.seeds for v in args.variants]
    results = run_parallel(train_one, jobs, args.workers)
    print(f"{'variant':<9} {'accuracy %':>14} {'macro-F1 %':>14} {'intra/inter':>14} {'mean a':>7} {'std a':>6} {'a>0.5':>6}")
    summary = []
    for variant in args.variants:
        runs = [r for r in results if r["variant"] == variant]
        row = {"variant": variant, **{k: [r[k] for r in runs] for k in ("accuracy", "macro_f1", "intra_inter_ratio")}}
        for key in ATTENTION_KEYS:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = statistics.mean(values) if values else None
        summary.append(row)
        print(f"{variant:<9} {mean_std(row['accuracy'], 100):>14} {mean_std(row['macro_f1'], 100):>14} "
              f"{mean_std(row['intra_inter_ratio']):>14} {row['attention'] or float('nan'):>7.3f} "
              f"{row['attention_std'] or float('nan'):>6.3f} {row['attention_above_half'] or float('nan'):>6.3f}")
    print("mean ± std over seeds; intra/inter: lower = more compact class clusters; attention is 1 for center; std a: over samples and dimensions")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
