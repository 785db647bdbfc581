"""MAL vs fixed-weight multi-task training when part of the auxiliary (expression) labels are random.

On the synthetic benchmark (tasks ``au`` + ``expr``, a fraction of training expression labels
flipped, optionally few AU labels), for each seed and the same number of real updates:

- ``au_only``: the plain method with expression weight 0 (same network);
- ``rho=<r>``: the plain method with expression task weight r (fixed multi-task weighting);
- ``mal`` (and ``mal_<input>`` variants): MAL with the meta-net reading ``--meta-inputs``;
- ``rho=<r>/filtered`` (``--filtered``): the plain method with the corrupted expression labels dropped,
  the ideal 0/1 weighting (diagnostic: how much any per-sample reweighting could gain);
- ``rho=<r>/without_meta`` (``--without-meta``): the plain method never trained on MAL's meta faces, the
  baseline of the paper's protocol (its meta set is AU data outside the training set) for held-out MAL;
- ``rho=<r>/history_filtered`` (``--history-filtered``): the plain method dropping, from its second epoch on
  (``--history-filtered-from-epoch``), the expression labels whose confidence history (mean ``p(label)`` over the
  face's visits, standardised within its label) is among the lowest ``--noise``: small-loss selection on the
  signal MAL's ``dynamics`` input reads, with the noise rate known (diagnostic: what a hard selection on that
  signal gains, without a meta-net);
- ``mal_oracle`` (``--oracle``): a diagnostic MAL whose meta-net reads which expression labels are
  corrupted. It separates the hypergradient's signal from the meta-net's input: if the oracle's
  weights split clean from corrupted faces and a real input's do not, the input is the bottleneck.

The diagnostic methods read the benchmark's ground truth and live in ``mal_diagnostics.py``; each run
trains its class through ``Trainer(method_class=...)`` (nothing is registered in the library).

MAL's K meta faces are held out of its base stream (``method.meta_holdout``), while the baselines
train on every face; ``--meta-in-base`` keeps them in MAL's base stream too (variants ``.../shared``),
so every variant fits the same faces and the meta set's cost is not charged to MAL alone.

It reports the AU mean F1 on test (the checkpoint with the best validation AU F1), MAL's mean learned
expression weight on clean vs corrupted training samples (last epoch), their mean alignment
with the meta gradient over the run (``hypergradient: difference`` only; see ``align_*`` in
:mod:`facemtl.methods.mal`), how well each per-face history separates the two (``auc_*``), MAL's final
weight of clean neutral / subtle / strong and of corrupted faces, also per expression label
(``final_weight_*``), and, measured in the same process on the same batches, the wall time of one MAL
step relative to one plain multi-task step, for the full virtual step and the heads-only option, each with both
hypergradients (``autograd`` through the virtual step, and ``difference``).

    python benchmarks/mal_aux.py --protocol --seeds 0 1 2 3 4 --json mal.json   # the documented table, ~65 min
    python benchmarks/mal_aux.py --protocol-warmup --seeds 0 1 2 3 4 5 6 7 8 9 --json w.json  # MAL > fixed rho, ~100 min
    python benchmarks/mal_aux.py --quick --json mal.json    # about 12 CPU-minutes at one thread (estimate)
    python benchmarks/mal_aux.py --json mal.json            # full: 3 seeds, 6000 faces, 12 epochs
    python benchmarks/mal_aux.py --merge a.json b.json --json all.json   # runs of separate processes, one table
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from _common import add_difficulty_argument, add_merge_argument, mean_std, merged_results, train_run
from mal_diagnostics import FilteredPlain, history_filtered_plain, history_separation, oracle_mal, plain_without_meta

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine.trainer import build_method, build_optimizer
from facemtl.methods import Method, TrainContext

#: a variant: its config overrides and, for a benchmark-local method (mal_diagnostics), the class to train
Variant = tuple[list[str], type[Method] | None]

#: --quick: about 12 CPU-minutes (estimated from step times) for the 3 seeds (1,000 faces, 32 px, 5 epochs)
QUICK = {"num_train": 1000, "num_val": 300, "num_test": 500, "image_size": 32, "epochs": 5, "meta_size": 50,
         "au_fraction": 0.5, "timing_steps": 10}


#: --protocol: the setting of docs/benchmarks.md's 5-seed MAL tables (uniform noise, faces a small net can fit,
#: the best fixed balance given to MAL, which only reweights expression faces; about 13 min per seed at one thread)
PROTOCOL = {"num_train": 3000, "num_val": 500, "num_test": 1000, "image_size": 48, "epochs": 8, "au_fraction": 0.5,
            "meta_size": 150, "difficulty": 0.3, "normalize": ["sum"], "mal_expr_weight": 0.1, "fix_au_weights": True,
            "virtual_step": "all", "hypergradient": "difference", "meta_in_base": True, "meta_standardize": True,
            "meta_lr": 0.003, "meta_inputs": ["loss", "dynamics+alignment"], "filtered": True,
            "variants": ["au_only", "rho=0.1", "rho=0.5", "rho=1", "rho=0.1/filtered", "mal_loss[sum]/shared",
                         "mal_dynamics+alignment[sum]/shared"]}

#: --protocol-warmup: the setting where MAL with a real input beats the best fixed weight (docs/benchmarks.md, "What a
#: real input lacks"): scarce AU labels (30 %), each face's history as input, weights applied after a 4-epoch
#: warm-up, meta lr 1e-3 (about 2 min per plain run and 3 min per MAL run at one thread; add --seeds 0 ... 9)
PROTOCOL_WARMUP = {**PROTOCOL, "au_fraction": 0.3, "meta_lr": 0.001, "meta_inputs": ["dynamics+alignment"],
                   "weight_from_epoch": 4, "timing_steps": 0,
                   "variants": ["au_only", "rho=0.1", "rho=0.1/filtered", "mal_dynamics+alignment[sum]/from_epoch=4/shared"]}

HYPERGRADIENTS = ("autograd", "difference")

ALIGNMENT = ("align_expr_clean", "align_expr_flipped")


def base_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "model.tasks=[au,expr]", f"model.backbone={args.backbone}",
        f"data.label_noise={args.noise}", f"data.noise_mode={args.noise_mode}", f"data.label_fraction.au={args.au_fraction}",
        f"data.seed={seed}", f"train.seed={seed}", f"data.num_train={args.num_train}",
        f"data.num_val={args.num_val}", f"data.num_test={args.num_test}", f"data.image_size={args.image_size}",
        f"data.difficulty={args.difficulty}",
        f"train.epochs={args.epochs}", f"train.lr={args.lr}", "train.warmup_epochs=1", "train.threads=1",
        f"train.select_tasks=[{args.select_tasks}]",
    ]


def mal_overrides(args: argparse.Namespace, meta_input: str, virtual_step: str = "all", normalize: str = "batch",
                  hypergradient: str | None = None) -> list[str]:
    return [
        "method.name=mal", f"method.meta_input={meta_input}", f"method.virtual_step={virtual_step}",
        f"method.hypergradient={hypergradient or args.hypergradient}",
        f"method.meta_size={args.meta_size}", f"method.meta_batch_size={args.meta_batch_size}",
        f"method.meta_lr={args.meta_lr}", f"method.meta_weight_decay={args.meta_weight_decay}",
        f"method.normalize={normalize}",
        f"method.task_weights.expr={args.mal_expr_weight}", f"method.weight_au={str(not args.fix_au_weights).lower()}",
        f"method.meta_standardize={str(args.meta_standardize).lower()}",
        f"method.meta_holdout={str(not args.meta_in_base).lower()}",
        f"method.weight_from_epoch={args.weight_from_epoch}",
    ]


def _mal_name(stem: str, normalize: str, args: argparse.Namespace) -> str:
    """``stem[normalize]/from_epoch=N/shared``: the normalisation unless batch, /from_epoch=N when the weights
    apply from epoch N, /shared when the meta faces also train theta."""
    return (stem + ("" if normalize == "batch" else f"[{normalize}]")
            + (f"/from_epoch={args.weight_from_epoch}" if args.weight_from_epoch else "")
            + ("/shared" if args.meta_in_base else ""))


def variants(args: argparse.Namespace) -> dict[str, Variant]:
    """Every variant the flags ask for (or those of ``--variants``), by name."""
    weight = lambda r: [f"method.task_weights.expr={r}"]
    out: dict[str, Variant] = {"au_only": (["method.name=plain", *weight(0)], None)}
    out.update({f"rho={r:g}": (["method.name=plain", *weight(r)], None) for r in args.rhos})
    if args.filtered:
        out.update({f"rho={r:g}/filtered": (["method.name=plain", *weight(r)], FilteredPlain) for r in args.rhos})
    if args.history_filtered:
        selection = history_filtered_plain(args.noise, args.history_filtered_from_epoch)
        late = "" if args.history_filtered_from_epoch == 1 else f"(from_epoch={args.history_filtered_from_epoch})"
        out.update({f"rho={r:g}/history_filtered{late}": (["method.name=plain", *weight(r)], selection)
                    for r in args.rhos})
    if args.without_meta:
        without = plain_without_meta(args.meta_size)
        out.update({f"rho={r:g}/without_meta": (["method.name=plain", *weight(r)], without) for r in args.rhos})
    for normalize in args.normalize:
        for meta_input in args.meta_inputs:
            name = _mal_name("mal" if meta_input == "feat" else f"mal_{meta_input}", normalize, args)
            out[name] = (mal_overrides(args, meta_input, args.virtual_step, normalize), None)
        if args.oracle:
            out[_mal_name(_oracle_stem(args), normalize, args)] = (
                mal_overrides(args, "loss", args.virtual_step, normalize),
                oracle_mal(args.oracle_error, args.oracle_error_on, args.oracle_from_epoch))
    if args.variants:
        unknown = sorted(set(args.variants) - set(out))
        if unknown:
            raise SystemExit(f"mal_aux: unknown --variants {', '.join(unknown)}; choose from: {', '.join(out)}")
        out = {name: variant for name, variant in out.items() if name in args.variants}
    return out


def _oracle_stem(args: argparse.Namespace) -> str:
    """``mal_oracle``, with ``(error=..,from_epoch=..,on=..)`` for an imperfect flag."""
    imperfect = [f"{key}={value:g}" for key, value in (("error", args.oracle_error),
                                                       ("from_epoch", args.oracle_from_epoch)) if value]
    if args.oracle_error and args.oracle_error_on != "random":
        imperfect.append(f"on={args.oracle_error_on}")
    return "mal_oracle" + (f"({','.join(imperfect)})" if imperfect else "")


def train_one(name: str, overrides: list[str], method_class: type[Method] | None = None) -> dict:
    run = train_run(overrides, history_separation, method_class)
    result = {"variant": name, "au_f1": run["test"]["au"]["f1_mean"]}
    last = run["rows"][-1]
    for key in ("weight_expr_clean", "weight_expr_flipped", "weight_au", "meta_size"):
        if last.get(key):
            result[key] = float(last[key])
    result.update({key: value for key, value in run.items() if key.startswith(("auc_", "final_weight_"))})
    for key in ALIGNMENT:  # mean over the epochs: the per-epoch means are noisy
        values = [float(row[key]) for row in run["rows"] if row.get(key)]
        if values:
            result[key] = statistics.mean(values)
    for key in ("weight_expr_clean", "weight_expr_flipped"):  # per epoch: how fast the weights split
        values = [float(row[key]) for row in run["rows"] if row.get(key)]
        if values:
            result[f"{key}_by_epoch"] = values
    return result


def step_times(args: argparse.Namespace, repeats: int) -> dict[str, float]:
    """Median seconds per training step of plain multi-task and MAL ({full, heads} virtual step x
    {autograd, difference} hypergradient), same batches."""
    torch.set_num_threads(1)
    overrides = base_overrides(args, 0)
    configs = {"plain": load_config(None, overrides + ["method.name=plain"])}
    for hypergradient in HYPERGRADIENTS:
        for virtual_step, label in (("all", "full"), ("heads", "heads")):
            configs[f"mal_{label}_{hypergradient}"] = load_config(
                None, overrides + mal_overrides(args, "feat", virtual_step, hypergradient=hypergradient))
    train = build_datasets(configs["plain"].data, splits=("train",))["train"]
    steppers = {}
    for name, config in configs.items():
        method = build_method(config, train.label_spaces, TrainContext(len(train), 1, 1))
        method.on_fit_start({"train": train})
        steppers[name] = (method.train(), build_optimizer(method, config.train))
    batch_size = configs["plain"].train.batch_size
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for step in range(repeats + 2):  # interleaved, so drifts in machine load hit all three alike
        start = step * batch_size % max(len(train) - batch_size, 1)
        batch = train.__getitems__(list(range(start, start + batch_size)))
        for name, (method, optimizer) in steppers.items():
            started = time.perf_counter()
            method.train_step(batch, optimizer)
            if step >= 2:  # first two: warm-up
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def summarise(results: list[dict]) -> list[dict]:
    table = []
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        row = {"variant": name, "au_f1": [r["au_f1"] for r in runs]}
        inspected = sorted({key for r in runs for key in r if key.startswith(("auc_", "final_weight_"))})
        for key in ("weight_expr_clean", "weight_expr_flipped", "weight_au", *ALIGNMENT, *inspected):
            values = [r[key] for r in runs if key in r]
            row[key] = statistics.mean(values) if values else None
        table.append(row)
    return table


def print_table(table: list[dict], times: dict[str, float]) -> None:
    print(f"{'variant':>24} | {'AU F1 test (%)':>15} | {'w expr clean':>12} {'w expr corrupt':>14} {'w au':>6} | "
          f"{'align clean':>11} {'align corrupt':>13}")
    for row in table:
        fmt = lambda v, digits=3: "-" if v is None else f"{v:.{digits}f}"
        print(f"{row['variant']:>24} | {mean_std(row['au_f1'], 100):>15} | {fmt(row['weight_expr_clean']):>12} "
              f"{fmt(row['weight_expr_flipped']):>14} {fmt(row['weight_au']):>6} | "
              f"{fmt(row['align_expr_clean'], 4):>11} {fmt(row['align_expr_flipped'], 4):>13}")
    print("AU mean F1 on test, checkpoint picked on validation (--select-tasks), mean ± std over seeds; weights: MAL's last epoch mean; "
          "align: <grad l_i, meta gradient>, mean over the run (difference hypergradient only)")
    for row in table:  # meta_input dynamics / alignment: how well the per-face histories tell the faces apart
        aucs = {key[4:]: value for key, value in row.items() if key.startswith("auc_") and value is not None}
        if aucs:
            print(f"{row['variant']}: history AUC clean > corrupted (best checkpoint) "
                  + ", ".join(f"{key} {value:.3f}" for key, value in aucs.items()))
        finals = {key[13:]: value for key, value in row.items() if key.startswith("final_weight_") and value is not None}
        if finals:
            print(f"{row['variant']}: final expression weight (best checkpoint) "
                  + ", ".join(f"{key} {value:.3f}" for key, value in finals.items()))
    if not times:  # --timing-steps 0
        return
    plain = times["plain"]
    print(f"step time (median, one thread): plain multi-task {1000 * plain:.1f} ms")
    for hypergradient in HYPERGRADIENTS:
        cells = [f"{label} {1000 * times[f'mal_{label}_{hypergradient}']:.1f} ms "
                 f"({times[f'mal_{label}_{hypergradient}'] / plain:.2f}x)" for label in ("full", "heads")]
        print(f"  MAL, hypergradient {hypergradient}: virtual step " + "; ".join(cells))


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Presets, seeds, the synthetic data and the training budget."""
    parser.add_argument("--quick", action="store_true", help="small run (~10 min at one thread)")
    parser.add_argument("--protocol", action="store_true",
                        help="the documented 5-seed protocol's setting and variants (docs/benchmarks.md; "
                             "add --seeds 0 1 2 3 4); explicit flags still win")
    parser.add_argument("--protocol-warmup", action="store_true",
                        help="the setting where MAL with a real input beats the best fixed weight (scarce AU labels, "
                             "weight_from_epoch 4, meta lr 1e-3; add --seeds 0 1 2 3 4 5 6 7 8 9)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", type=float, default=0.4, help="fraction of training expression labels flipped")
    parser.add_argument("--noise-mode", default="uniform", choices=["uniform", "ambiguous"],
                        help="uniform: flips independent of the face (a feature-only meta-net cannot see them); "
                             "ambiguous: subtle expressions flipped more often")
    parser.add_argument("--au-fraction", type=float, default=0.3, help="fraction of training faces with AU labels")
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    parser.add_argument("--num-train", type=int, default=6000)
    parser.add_argument("--num-val", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--backbone", default="tiny")
    add_difficulty_argument(parser)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--select-tasks", default="au",
                        help="tasks whose validation scores pick each run's best checkpoint (train.select_tasks); "
                             "au: the main task alone; 'au,expr' gives the tables measured before 2026-11-24")
    parser.add_argument("--timing-steps", type=int, default=20, help="0 skips the step-time comparison")
    parser.add_argument("--timing-only", action="store_true", help="only the step-time comparison, no training")
    parser.add_argument("--json", help="write per-run results, the summary and the step times here")
    add_merge_argument(parser)


def _add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """Which variants run: MAL inputs, diagnostics, ``--variants``."""
    parser.add_argument("--meta-inputs", nargs="+", default=["feat", "feat+loss"],
                        help="MAL variants: '+'-joined parts of feat, loss, dynamics, alignment (feat = paper)")
    parser.add_argument("--oracle", action="store_true",
                        help="also mal_oracle: the meta-net reads which expression labels are corrupted (diagnostic)")
    parser.add_argument("--oracle-error", type=float, default=0.0,
                        help="mal_oracle's flag is wrong for this fraction of the faces (a detector of AUC 1 - it)")
    parser.add_argument("--oracle-error-on", default="random", choices=["random", "weak"],
                        help="which faces get mal_oracle's wrong flags: random ones, or the clean faces with the "
                             "weakest expression (neutral first)")
    parser.add_argument("--oracle-from-epoch", type=int, default=0,
                        help="mal_oracle's flag stays hidden (uniform weights) for this many epochs")
    parser.add_argument("--filtered", action="store_true",
                        help="also rho=<r>/filtered: the corrupted expression labels dropped "
                             "(the ideal weighting; diagnostic)")
    parser.add_argument("--history-filtered", action="store_true",
                        help="also rho=<r>/history_filtered: drops the expression labels with the lowest confidence "
                             "history (small-loss selection, noise rate known; diagnostic)")
    parser.add_argument("--history-filtered-from-epoch", type=int, default=1,
                        help="epochs history_filtered trains on every label before it selects")
    parser.add_argument("--without-meta", action="store_true",
                        help="also rho=<r>/without_meta: never trained on MAL's meta faces (the paper's protocol, "
                             "where the meta set is AU data outside the training set; compare with held-out MAL)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="train only these (au_only, rho=0.1, ..., mal, mal_feat+loss, mal[relative]); default: all")


def _add_mal_arguments(parser: argparse.ArgumentParser) -> None:
    """MAL's options in the accuracy runs."""
    parser.add_argument("--meta-size", type=int, default=300)
    parser.add_argument("--meta-batch-size", type=int, default=32)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--meta-weight-decay", type=float, default=0.0, help="MAL's meta-net weight decay")
    parser.add_argument("--meta-in-base", action="store_true",
                        help="MAL's meta faces also train theta (method.meta_holdout=false); "
                             "names its variants .../shared")
    parser.add_argument("--virtual-step", default="all", choices=["all", "heads"], help="MAL's virtual step in the accuracy runs")
    parser.add_argument("--mal-expr-weight", type=float, default=1.0,
                        help="MAL's expression task weight (with normalize sum: the fixed task balance, like rho)")
    parser.add_argument("--meta-standardize", action="store_true",
                        help="MAL standardises each meta-net input column over the base batch")
    parser.add_argument("--weight-from-epoch", type=int, default=0,
                        help="MAL's real steps keep unit weights for this many epochs (method.weight_from_epoch); "
                             "names its variants .../from_epoch=N")
    parser.add_argument("--fix-au-weights", action="store_true", help="MAL weights expression samples only (AU at 1)")
    parser.add_argument("--hypergradient", default="autograd", choices=HYPERGRADIENTS, help="MAL's in the accuracy runs")
    parser.add_argument("--normalize", nargs="+", default=["batch"], choices=["none", "batch", "sum", "relative"],
                        help="MAL's weight normalisations; each other than batch names its variants mal[<it>]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for add in (_add_run_arguments, _add_variant_arguments, _add_mal_arguments):
        add(parser)
    args = parser.parse_args()
    if args.merge:  # e.g. seeds run by separate processes
        report(merged_results(args.merge, "runs"), {}, args.json, {"merged": args.merge})
        return
    for preset, values in ((args.protocol, PROTOCOL), (args.protocol_warmup, PROTOCOL_WARMUP), (args.quick, QUICK)):  # flags given explicitly still win
        for key, value in values.items() if preset else ():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    runs = variants(args)  # first: a wrong --variants fails before any work
    times = step_times(args, args.timing_steps) if args.timing_steps > 0 else {}
    results = []
    for seed in [] if args.timing_only else args.seeds:
        for name, (extra, method_class) in runs.items():
            results.append({"seed": seed, **train_one(name, base_overrides(args, seed) + extra, method_class)})
            print(f"seed {seed} {name}: AU F1 {100 * results[-1]['au_f1']:.2f}", flush=True)
    report(results, times, args.json, {"args": vars(args)})


def report(results: list[dict], times: dict[str, float], json_path: str | None, header: dict) -> None:
    """Print the table; with ``json_path``, write it with the per-run results (under ``runs``) and step times."""
    table = summarise(results)
    print_table(table, times)
    if json_path:
        Path(json_path).write_text(json.dumps({**header, "runs": results, "summary": table, "step_seconds": times}, indent=2))


if __name__ == "__main__":
    main()
