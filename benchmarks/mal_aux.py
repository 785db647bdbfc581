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
from typing import Any

import torch
from _common import add_difficulty_argument, add_merge_argument, mean_std, merged_results, train_run

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine.trainer import build_method, build_optimizer
from facemtl.losses.meta import expr_sample_losses
from facemtl.methods import METHODS, TrainContext
from facemtl.methods.mal import (
    HISTORY_TASKS,
    FaceHistory,
    MALConfig,
    MALMethod,
    draw_meta_set,
    drop_faces,
    standardize_within_label,
)
from facemtl.methods.plain import PlainMethod

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


@METHODS.register("mal_oracle")
class OracleMAL(MALMethod):
    """Diagnostic: the meta-net reads the benchmark's corrupted-label flag, one-hot ``[clean, corrupted]``
    (needs ``method.meta_input=loss``, the two-column input).

    ``error`` and ``from_epoch`` (set by ``--oracle-error`` / ``--oracle-from-epoch``) make it an imperfect
    detector, to tell which property of the perfect flag a real input lacks: the flag is wrong for a fixed
    ``error`` fraction of the faces, drawn at random (a detector of AUC ``1 - error``; the confidence history
    reaches about 0.9) or, with ``error_on`` weak (``--oracle-error-on weak``), put on the clean faces with the
    weakest expression, neutral ones first (the faces the confidence history lowers with the corrupted ones),
    and hidden (``[0.5, 0.5]`` for every face: uniform weights) for the first ``from_epoch`` epochs (a detector
    that needs the model trained first; the history-based weights split around epoch 4 of 8)."""

    error = 0.0
    error_on = "random"  # random | weak (the clean faces with the weakest expression, neutral first)
    from_epoch = 0

    def set_training_data(self, dataset: Any) -> None:
        super().set_training_data(dataset)
        draw = torch.rand(len(dataset.mask["expr"]), generator=torch.Generator().manual_seed(self.config.meta_seed + 7))
        self.wrong_flag = draw < self.error
        if self.error_on == "weak":  # as many wrong flags, on the clean faces with the weakest expression
            clean = dataset.mask["expr"].bool() & ~dataset.info["expr_flipped"].bool()
            order = torch.where(clean, dataset.info["expr_intensity"] + 1e-6 * draw, float("inf")).argsort()
            self.wrong_flag = torch.zeros_like(self.wrong_flag)
            self.wrong_flag[order[:int(self.error * len(draw))]] = True

    def meta_inputs(self, outputs: dict, entries: dict, batch: dict) -> torch.Tensor:
        flipped = batch["info"]["expr_flipped"].bool() ^ self.wrong_flag[batch["index"].cpu()].to(batch["index"].device)
        flipped = flipped.to(outputs["feat"].dtype)[:, None]
        if self.in_first_epochs(self.from_epoch):
            flipped = torch.full_like(flipped, 0.5)
        return torch.cat([1 - flipped, flipped], dim=1)


@METHODS.register("plain_filtered")
class FilteredPlain(PlainMethod):
    """Diagnostic: fixed weighting with the corrupted expression labels dropped, the ideal 0/1
    per-sample weighting that MAL's meta-net could at best learn (what reweighting can gain)."""

    def training_step(self, batch: dict) -> dict:
        mask = batch["mask"]["expr"]
        clean = (mask.bool() & ~batch["info"]["expr_flipped"].bool()).to(mask.dtype)
        return super().training_step({**batch, "mask": {**batch["mask"], "expr": clean}})


@METHODS.register("plain_history_filtered")
class HistoryFilteredPlain(PlainMethod):
    """Diagnostic: fixed weighting that drops the expression labels whose confidence history is among the
    lowest ``drop_fraction`` (the benchmark's noise rate, ``--noise``), after ``from_epoch`` epochs (``--history-
    filtered-from-epoch``, default 1: every face seen once) on every label. The history is
    MAL's ``dynamics`` signal, each face's mean ``p(label)`` over its visits, standardised within its label
    (:func:`standardize_within_label`), so the selection is what the meta-net could learn from that input
    with a hard threshold and the noise rate given."""

    drop_fraction = 0.4
    from_epoch = 1  # epochs trained on every label before the selection starts (1: every face seen once)

    def set_training_data(self, dataset: Any) -> None:
        self.confidence = FaceHistory(len(dataset.mask["expr"]), 1)
        self.face_labels = torch.where(dataset.mask["expr"].bool(), dataset.labels["expr"].long(), -1)
        self.steps = 0

    def selection_score(self) -> torch.Tensor:
        """``[N]``: each face's mean label confidence, standardised within its label (0: unvisited)."""
        mean, _ = self.confidence.mean_std()
        return standardize_within_label(mean[:, 0], self.face_labels, self.confidence.visited()[:, 0])

    def kept_faces(self) -> torch.Tensor:
        """``[N]`` bool: the faces whose expression label is kept (score above the ``drop_fraction`` quantile)."""
        score, counted = self.selection_score(), self.confidence.visited()[:, 0] & (self.face_labels >= 0)
        return score > score[counted].quantile(self.drop_fraction)

    def training_step(self, batch: dict) -> dict:
        outputs = self.net(batch["image"])
        labels, mask = batch["labels"]["expr"], batch["mask"]["expr"]
        confidence = torch.exp(-expr_sample_losses(outputs["expr"], labels, mask).detach())
        self.confidence.record(batch["index"], confidence[:, None], mask.float()[:, None])
        if self.steps >= self.from_epoch * self.context.steps_per_epoch:
            mask = mask & self.kept_faces()[batch["index"]].to(mask.dtype)
        self.steps += 1
        return self.combine(self.task_losses(outputs, {**batch, "mask": {**batch["mask"], "expr": mask}}))


@METHODS.register("plain_without_meta")
class PlainWithoutMetaFaces(PlainMethod):
    """Baseline under the paper's protocol, where the meta set is AU data outside the training set:
    fixed weighting that never trains on the faces MAL holds out as its meta set (same seeded draw,
    ``meta_size`` set by the benchmark), so MAL's only extra is *using* them to weight the rest."""

    meta_size = MALConfig.meta_size

    def set_training_data(self, dataset: Any) -> None:
        self.meta_faces = draw_meta_set(dataset.mask["au"], self.meta_size, MALConfig.meta_seed)

    def training_step(self, batch: dict) -> dict:
        return super().training_step(drop_faces(batch, self.meta_faces))


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
        f"method.history_by_label={str(args.history_by_label).lower()}",
        f"method.weight_from_epoch={args.weight_from_epoch}",
    ]


def _mal_name(stem: str, normalize: str, args: argparse.Namespace) -> str:
    """``stem[normalize]/by_label/from_epoch=N/shared``: the normalisation unless batch, /by_label when histories
    are compared within each expression label, /from_epoch=N when the weights apply from epoch N, /shared when the
    meta faces also train theta."""
    return (stem + ("" if normalize == "batch" else f"[{normalize}]") + ("/by_label" if args.history_by_label else "")
            + (f"/from_epoch={args.weight_from_epoch}" if args.weight_from_epoch else "")
            + ("/shared" if args.meta_in_base else ""))


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    out = {"au_only": ["method.name=plain", "method.task_weights.expr=0"]}
    out.update({f"rho={r:g}": ["method.name=plain", f"method.task_weights.expr={r}"] for r in args.rhos})
    if args.filtered:
        out.update({f"rho={r:g}/filtered": ["method.name=plain_filtered", f"method.task_weights.expr={r}"]
                    for r in args.rhos})
    if args.history_filtered:
        HistoryFilteredPlain.drop_fraction = args.noise
        HistoryFilteredPlain.from_epoch = args.history_filtered_from_epoch
        late = "" if args.history_filtered_from_epoch == 1 else f"(from_epoch={args.history_filtered_from_epoch})"
        out.update({f"rho={r:g}/history_filtered{late}": ["method.name=plain_history_filtered",
                                                    f"method.task_weights.expr={r}"] for r in args.rhos})
    if args.without_meta:
        out.update({f"rho={r:g}/without_meta": ["method.name=plain_without_meta", f"method.task_weights.expr={r}"]
                    for r in args.rhos})
    for normalize in args.normalize:
        for meta_input in args.meta_inputs:
            name = _mal_name("mal" if meta_input == "feat" else f"mal_{meta_input}", normalize, args)
            out[name] = mal_overrides(args, meta_input, args.virtual_step, normalize)
        if args.oracle:
            OracleMAL.error, OracleMAL.error_on = args.oracle_error, args.oracle_error_on
            OracleMAL.from_epoch = args.oracle_from_epoch
            imperfect = [f"{key}={value:g}" for key, value in (("error", args.oracle_error),
                                                               ("from_epoch", args.oracle_from_epoch)) if value]
            if args.oracle_error and args.oracle_error_on != "random":
                imperfect.append(f"on={args.oracle_error_on}")
            stem = "mal_oracle" + (f"({','.join(imperfect)})" if imperfect else "")
            out[_mal_name(stem, normalize, args)] = [
                *mal_overrides(args, "loss", args.virtual_step, normalize), "method.name=mal_oracle"]
    if args.variants:
        unknown = sorted(set(args.variants) - set(out))
        if unknown:
            raise SystemExit(f"mal_aux: unknown --variants {', '.join(unknown)}; choose from: {', '.join(out)}")
        out = {name: extra for name, extra in out.items() if name in args.variants}
    return out


def separation_auc(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """P(a clean face's value > a corrupted face's), ties counting half: 0.5 = no separation."""
    clean, corrupted = clean.double()[:, None], corrupted.double()[None, :]
    return float(((clean > corrupted).double() + 0.5 * (clean == corrupted).double()).mean())


def history_separation(trainer: Any, _metrics: dict, _rows: list[dict]) -> dict:
    """How well each per-face history MAL kept tells clean from corrupted expression labels at the end
    (AUC over the training faces with an expression label): what the meta-net *could* learn from it; and
    MAL's final expression weights by expression intensity (:func:`weights_by_intensity`)."""
    method, train = trainer.method, trainer.train_set
    flipped, labelled = train.info["expr_flipped"].bool(), train.mask["expr"].bool()
    out, expr = {}, HISTORY_TASKS.index("expr")
    expr_labels = torch.where(labelled, train.labels["expr"].long(), -1)
    histories = {"confidence": getattr(method, "label_confidence", None), "margin": getattr(method, "label_margin", None),
                 "alignment": getattr(method, "alignment_history", None)}
    for name, history in histories.items():
        if history is None or len(history.sums) == 0:
            continue
        mean, std = history.mean_std()
        within_label = standardize_within_label(mean[:, expr], expr_labels, history.visited()[:, expr])
        for stat, values in (("mean", mean[:, expr]), ("std", std[:, expr]), ("mean_within_label", within_label)):
            out[f"auc_{name}_{stat}"] = separation_auc(values[labelled & ~flipped], values[labelled & flipped])
    if isinstance(method, HistoryFilteredPlain):  # its selection at the end: kept 1, dropped 0
        score = method.selection_score()
        out["auc_confidence_mean_within_label"] = separation_auc(score[labelled & ~flipped], score[labelled & flipped])
    if isinstance(method, (MALMethod, HistoryFilteredPlain)) and "expr_intensity" in train.info:
        weights = final_expr_weights(method, train) if isinstance(method, MALMethod) else method.kept_faces().float()
        out.update(weights_by_intensity(weights, labelled, flipped, train.info["expr_intensity"]))
        out.update(weights_by_label(weights, expr_labels, flipped))
    return out


@torch.no_grad()
def final_expr_weights(method: MALMethod, train: Any, batch_size: int = 256) -> torch.Tensor:
    """``[N]``: the meta-net's expression weight of every training face at the loaded checkpoint (eval mode,
    inputs standardised over batches of ``batch_size``; nothing recorded)."""
    method.eval()
    weights = []
    for start in range(0, len(train), batch_size):
        batch = train.__getitems__(list(range(start, min(start + batch_size, len(train)))))
        outputs = method.net(batch["image"])
        weights.append(method.sample_weights(method.meta_inputs(outputs, method.entry_losses(outputs, batch), batch))["expr"])
    return torch.cat(weights)


def weights_by_intensity(weights: torch.Tensor, labelled: torch.Tensor, flipped: torch.Tensor,
                         intensity: torch.Tensor) -> dict:
    """Mean final expression weight of clean faces with a subtle (below the median intensity) and a strong
    expression, of neutral clean faces and of corrupted faces: whether a meta-net's input lowers the *hard*
    clean faces along with the corrupted ones (the ideal weighting keeps all clean faces alike)."""
    clean = labelled & ~flipped
    expressive = clean & (intensity > 0)
    median = intensity[expressive].median()
    groups = {"subtle": expressive & (intensity <= median), "strong": expressive & (intensity > median),
              "neutral": clean & (intensity == 0)}
    out = {f"final_weight_clean_{name}": float(weights[rows].mean()) for name, rows in groups.items() if bool(rows.any())}
    out["final_weight_flipped"] = float(weights[labelled & flipped].mean())
    return out


def weights_by_label(weights: torch.Tensor, labels: torch.Tensor, flipped: torch.Tensor) -> dict:
    """Mean final expression weight of the clean and of the corrupted faces carrying each expression label
    (``labels``: -1 for none): whether a meta-net weights whole classes (e.g. given ``meta_input`` part label)
    besides telling corrupted labels apart."""
    out = {}
    for label in labels[labels >= 0].unique().tolist():
        for kind, rows in (("clean", (labels == label) & ~flipped), ("flipped", (labels == label) & flipped)):
            if bool(rows.any()):
                out[f"final_weight_{kind}_label{label}"] = float(weights[rows].mean())
    return out


def train_one(name: str, overrides: list[str]) -> dict:
    run = train_run(overrides, history_separation)
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
        if hasattr(method, "set_training_data"):
            method.set_training_data(train)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--meta-inputs", nargs="+", default=["feat", "feat+loss"],
                        help="MAL variants: '+'-joined parts of feat, loss, label, au, dynamics, margin, alignment (feat = paper)")
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
    parser.add_argument("--history-by-label", action="store_true",
                        help="MAL compares each face's expression history with its label's faces "
                             "(method.history_by_label); names its variants .../by_label")
    parser.add_argument("--weight-from-epoch", type=int, default=0,
                        help="MAL's real steps keep unit weights for this many epochs (method.weight_from_epoch); "
                             "names its variants .../from_epoch=N")
    parser.add_argument("--fix-au-weights", action="store_true", help="MAL weights expression samples only (AU at 1)")
    parser.add_argument("--hypergradient", default="autograd", choices=HYPERGRADIENTS, help="MAL's in the accuracy runs")
    parser.add_argument("--normalize", nargs="+", default=["batch"], choices=["none", "batch", "sum", "relative"],
                        help="MAL's weight normalisations; each other than batch names its variants mal[<it>]")
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
    args = parser.parse_args()
    if args.merge:  # e.g. seeds run by separate processes
        report(merged_results(args.merge, "runs"), {}, args.json, {"merged": args.merge})
        return
    for preset, values in ((args.protocol, PROTOCOL), (args.protocol_warmup, PROTOCOL_WARMUP), (args.quick, QUICK)):  # flags given explicitly still win
        for key, value in values.items() if preset else ():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    PlainWithoutMetaFaces.meta_size = args.meta_size
    runs = variants(args)  # first: a wrong --variants fails before any work
    times = step_times(args, args.timing_steps) if args.timing_steps > 0 else {}
    results = []
    for seed in [] if args.timing_only else args.seeds:
        for name, extra in runs.items():
            results.append({"seed": seed, **train_one(name, base_overrides(args, seed) + extra)})
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
