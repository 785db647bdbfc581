"""Deng et al.'s recipe on incomplete labels: teacher vs students vs their ensemble, with and without balancing.

The synthetic benchmark is split into three "datasets" (three seeds of the generator),
each labelling one task only: AU, EXPR (imbalanced: the rarest class ``--imbalance`` times
rarer than the most frequent) and VA. Every step holds one sub-batch per task
(``data.batching=per_task``); VA is 20-bin classification + CCC. For each seed and
balancing setting (``data.balance`` none | auto):

1. a teacher (plain method, AU weighted 8) is trained;
2. ``--students`` students (distill method, lambda_teacher 0.4, T 1.5) are trained from it;
3. everything is scored on the test split (validation and test faces are labelled for every
   task); every model's AU decisions use per-AU thresholds tuned on validation
   (break-even, as the official ``val.py``), so the ensemble has no threshold advantage.

Reported: EXPR macro-F1 and ABAW score, mean F1 of the 3 rarest expression classes, AU mean
F1 and ABAW score, mean F1 of the 3 rarest AUs, VA mean CCC, and the ABAW total
(EXPR + AU + VA). "student" is the mean over the single students.

    python benchmarks/distill_incomplete.py --quick --json distill_quick.json    # ~5 CPU-minutes, one thread
    python benchmarks/distill_incomplete.py --json distill.json                   # 3 seeds, 3,000 faces per source, 48 px, 12 + 12 epochs

Seeds are independent: on several cores run one process per seed and merge their tables::

    python benchmarks/distill_incomplete.py --seeds 0 --json distill_0.json &   # ... 1, 2
    python benchmarks/distill_incomplete.py --merge distill_0.json distill_1.json distill_2.json --json distill.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_merge_argument, merged_results

from facemtl.config import load_config
from facemtl.engine import Trainer
from facemtl.engine.ensemble import Ensemble, tune_au_thresholds
from facemtl.engine.evaluate import evaluate
from facemtl.methods.distill import load_net
from facemtl.metrics.abaw import abaw_summary

TASKS = ("au", "expr", "va")
COLUMNS = ("expr_f1", "expr_abaw", "expr_rare_f1", "au_f1", "au_abaw", "au_rare_f1", "va_ccc", "abaw_total")


def _only(task: str) -> str:
    return "{" + ", ".join(f"{t}: {1.0 if t == task else 0.0}" for t in ("au", "expr", "va", "lmk", "attr")) + "}"


def overrides(args: argparse.Namespace, seed: int, balance: str) -> list[str]:
    sources = [f"{{name: synthetic, seed: {100 * seed + i + 1}, label_fraction: {_only(t)}}}" for i, t in enumerate(TASKS)]
    return [
        "data.name=mix", f"data.mix.sources=[{', '.join(sources)}]", f"data.num_train={args.num_train}",
        f"data.num_val={args.num_val}", f"data.num_test={args.num_test}", f"data.image_size={args.image_size}",
        f"data.imbalance={args.imbalance}", "data.batching=per_task", f"data.balance={balance}",
        "model.tasks=au,expr,va", f"model.backbone={args.backbone}", "model.va_bins=20", "method.va_loss=ccc",
        # A one-epoch warm-up: at a constant AdamW 3e-3 from step 0 the tiny network never leaves its
        # start (every model near chance after 1,200 steps, docs/benchmarks.md); with it, it learns.
        f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", "train.scheduler=none", "train.warmup_epochs=1",
        f"train.seed={seed}", "train.progress=false", "train.threads=1",
    ]


def score(nets: list, val, test) -> dict[str, float]:
    """Test metrics of the ensemble of ``nets`` (one net: the model alone), AU at val-tuned break-even thresholds."""
    ensemble = Ensemble(nets).eval()
    thresholds = np.asarray(tune_au_thresholds(ensemble, val, torch.device("cpu"))["break_even"])
    results = evaluate(ensemble.predict, test, TASKS, torch.device("cpu"), 256, thresholds)
    abaw = abaw_summary(results)
    expr_f1 = list(results["expr"]["f1"].values())  # classes ordered most -> least frequent
    au_rate = test.labels["au"].float().mean(0).numpy()
    rare_aus = [test.label_spaces.au_names[j] for j in np.argsort(au_rate)[:3]]
    return {
        "expr_f1": results["expr"]["macro_f1"], "expr_abaw": abaw["expr"], "expr_rare_f1": float(np.mean(expr_f1[-3:])),
        "au_f1": results["au"]["f1_mean"], "au_abaw": abaw["au"],
        "au_rare_f1": float(np.mean([results["au"]["f1"].get(a, 0.0) for a in rare_aus])),
        "va_ccc": results["va"]["ccc_mean"], "abaw_total": abaw["total"],
    }


def run_cell(args: argparse.Namespace, seed: int, balance: str, folder: Path) -> dict[str, dict]:
    """Teacher, students and ensemble of one seed and balancing setting."""
    base = overrides(args, seed, balance)
    teacher_cfg = load_config(None, base + ["method.name=plain", "method.task_weights={au: 8.0}", f"train.epochs={args.epochs}"])
    teacher = Trainer(teacher_cfg, folder / "teacher")
    teacher.fit()
    val, test = teacher.datasets["val"], teacher.datasets["test"]
    students = []
    for i in range(args.students):
        config = load_config(None, base + [
            "method.name=distill", f"method.teacher={folder / 'teacher'}", f"train.epochs={args.student_epochs}",
            f"train.seed={100 * seed + 10 + i}",
        ])
        Trainer(config, folder / f"student{i}").fit()
        students.append(load_net(str(folder / f"student{i}")))
    singles = [score([net], val, test) for net in students]
    return {
        "teacher": score([load_net(str(folder / "teacher"))], val, test),
        "student": {k: statistics.mean(s[k] for s in singles) for k in COLUMNS},
        "ensemble": score(students, val, test),
    }


def table(results: list[dict]) -> str:
    lines = [f"{'balance':8} {'model':9} " + " ".join(f"{c:>13}" for c in COLUMNS)]
    for balance in dict.fromkeys(r["balance"] for r in results):
        for model in ("teacher", "student", "ensemble"):
            cells = []
            for column in COLUMNS:
                values = [r[model][column] for r in results if r["balance"] == balance]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.3f}±{spread:.3f}")
            lines.append(f"{balance:8} {model:9} " + " ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 600 faces per source, 32 px, 5 + 3 epochs (~5 CPU-minutes, one thread)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--balance", nargs="+", default=["none", "auto"])
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--num-train", type=int, default=3000, help="training faces per source")
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--imbalance", type=float, default=10.0)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--epochs", type=int, default=12, help="teacher epochs")
    parser.add_argument("--student-epochs", type=int, default=12, help="epochs of each student")
    parser.add_argument("--batch-size", type=int, default=32, help="per task sub-batch")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--json", help="write the per-cell results here")
    add_merge_argument(parser)
    args = parser.parse_args()
    if args.merge:
        results = merged_results(args.merge, "results")
        print(table(results))
        if args.json:
            Path(args.json).write_text(json.dumps({"merged": args.merge, "results": results}, indent=2))
        return
    if args.quick:
        args.seeds, args.num_train, args.num_val, args.num_test = [0], 600, 300, 600
        args.image_size, args.epochs, args.student_epochs = 32, 5, 3
    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        for balance in args.balance:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder:
                cell = run_cell(args, seed, balance, Path(folder))
            results.append({"seed": seed, "balance": balance, **cell, "seconds": time.perf_counter() - started})
            print(f"seed {seed} balance {balance}: {results[-1]['seconds']:.0f}s", flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
