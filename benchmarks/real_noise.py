"""SCN and DACL on real label noise: train on FER2013's labels, judge on FERPlus's, on the same faces.

FER2013's faces carry two label sets: FER2013's own (one annotator, the noisy source) and
FERPlus's (10 votes per face). ``data.name=fer2013_ferplus`` joins them face by face; faces
whose FERPlus votes give no 7-class majority label (unknown / NF / contempt / no majority) are
dropped in every split and counted. Every variant trains on FER2013 ``Training`` under one
recipe and budget, selects its epoch on FER2013 PublicTest with FERPlus's majority labels
(clean) — and, from the same runs, on PublicTest with FER2013's labels (the realistic case
without a clean validation set) — and is tested on PrivateTest with FERPlus's majority labels:

- ``plain``: cross-entropy on FER2013's labels;
- ``scn``: SCN with its defaults (weighting after half the run, relabelling after three quarters);
- ``scn_paper``: SCN with the paper's settings (:data:`SCN_PAPER`: relabelling from epoch 10);
- ``dacl``: DACL with its defaults (a CE-Unit scaled to the 48 px feature map, see DACL_SIZE);
- ``scn_dacl``: both at once — no library method does that (each paper is one Method), so a
  benchmark-local subclass of both (``method_class=``) adds DACL's centre loss on SCN's
  (relabelled) labels to SCN's step: one forward, one loss;
- ``ceiling``: cross-entropy on FERPlus's majority labels of the same training faces.

Per run: test accuracy / macro-F1 at the epoch best on each validation label set (macro-F1,
as the trainer selects) and at the last epoch; the test embeddings' intra/inter-class
distance ratio on FERPlus labels. For every run on FER2013's labels, the last epoch's view of
each training face: how well low p(label) — and, for SCN, low importance — flags the faces
whose FER2013 and FERPlus labels disagree (AUROC, overall, per FER2013 class and by FERPlus
vote entropy), and SCN's relabels: how many, precision (new label = FERPlus majority) and
recall (share of the disagreeing faces whose final label is FERPlus's), by vote entropy.

Each finished (variant, seed) is appended to ``--results`` (JSON lines) at once; a rerun skips
what is there, so an interrupted table resumes with the same command::

    python benchmarks/real_noise.py --results runs/real_noise.jsonl --json real_noise.json
    python benchmarks/real_noise.py --results runs/real_noise.jsonl --table      # print what has finished
    python benchmarks/real_noise.py --demo --results runs/scn_demo.jsonl         # SCN defaults, synthetic demo regime

``--demo`` trains ``facemtl demo``'s defaults (8 epochs, all five tasks, 8,000 faces at 64 px)
with 35 % of the training expression labels flipped (``data.label_noise=0.35``): plain CE,
SCN with its defaults, SCN with the paper's schedule and SCN relabelling after half the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import mean_std

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats.ferplus import join_fer2013_ferplus
from facemtl.distributed import gather_cat
from facemtl.engine import Trainer, load_checkpoint
from facemtl.io.checkpoint import load_model_state
from facemtl.labels import EXPR_CLASSES_8
from facemtl.losses import center_update_direction, sparse_center_loss
from facemtl.methods import Method
from facemtl.methods.base import EpochStats
from facemtl.methods.dacl import DACLConfig, DACLMethod
from facemtl.methods.scn import SCNConfig, SCNMethod
from facemtl.metrics.expression import macro_f1
from facemtl.registry import METHODS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: One recipe for every variant: the shipped model's 48 px grey input and augmentation, the tiny backbone.
RECIPE = ["data.name=fer2013_ferplus", "data.image_size=48", "data.grey=true", "data.augment=landmarks",
          "data.aug_rotate=10", "data.aug_scale=0.15", "data.aug_shift=0.08", "data.num_expr_classes=7",
          "model.tasks=expr", "model.drop_rate=0.3", "train.batch_size=64", "train.optimizer=adamw",
          "train.weight_decay=0.05", "train.scheduler=cosine", "train.warmup_epochs=1", "train.eval_batch_size=512"]
#: DACL's CE-Unit scaled to the tiny backbone's 3x3x192 map at 48 px (the official 3584-wide unit
#: on 512x7x7 would hold 34M parameters here); as benchmarks/dacl_features.py.
DACL_SIZE = {"ce_unit_widths": [512, 128, 64], "pool_size": 3}
#: SCN as the paper and the official code run it (docs/benchmarks.md, "SCN defaults"): relabelling from epoch 10.
SCN_PAPER = ["method.name=scn", "method.relabel_epoch=10", "method.weight_start=0", "method.detach_importance_input=false"]
VARIANTS: dict[str, list[str]] = {
    "plain": ["method.name=plain"],
    "scn": ["method.name=scn"],
    "dacl": ["method.name=dacl", "method.ce_unit_widths=[512,128,64]", "method.pool_size=3"],
    "scn_dacl": ["method.name=scn"],  # + DACL's options, see combined_config
    "ceiling": ["method.name=plain", "data.fer2013_ferplus.train_labels=ferplus"],
    "scn_paper": SCN_PAPER,
}
DEMO_VARIANTS: dict[str, list[str]] = {
    "plain": ["method.name=plain"], "scn": ["method.name=scn"], "scn_paper": SCN_PAPER,
    "scn_r50": ["method.name=scn", "method.relabel_start=0.5"],  # relabelling after half the run instead
}
ENTROPY_BINS = ((0.0, 0.5, "H < 0.5 bit"), (0.5, 1.0, "0.5-1 bit"), (1.0, 99.0, "H >= 1 bit"))
CLASSES = EXPR_CLASSES_8[:7]


# -- SCN + DACL: a benchmark-local method ---------------------------------------------------
@dataclass
class SCNDACLConfig(SCNConfig, DACLConfig):
    """SCN's options and DACL's in one section (name stays ``scn``)."""

    def check(self) -> None:
        SCNConfig.check(self)
        DACLConfig.check(self)


class SCNWithDACL(SCNMethod, DACLMethod):
    """SCN's step (importance, WCE, rank regulariser, relabels) plus DACL's sparse centre loss on the
    labels SCN trains on; DACL's attention optimiser, centre update and parameter groups."""

    config_class = SCNDACLConfig

    def __init__(self, net, config, context) -> None:
        super().__init__(net, config, context)  # SCN, then DACL, then Method: both branches
        self.dacl_stats = EpochStats(("attention", "attention_above_half"))
        self.outputs: dict[str, Any] = {}
        net.register_forward_hook(lambda module, args, out: self.outputs.update(out))  # SCN's forward, reused

    def training_step(self, batch):
        labels = self.current_labels(batch)  # before this step's relabels, as SCN's own loss
        result = SCNMethod.training_step(self, batch)
        mask = batch["mask"]["expr"].bool()
        attention = self.attention(self.outputs["feat_map"])
        feat, weights, target = self.outputs["feat"][mask], attention[mask], labels[mask]
        center_loss = sparse_center_loss(feat, weights, self.centers.detach(), target)
        result["loss"] = result["loss"] + self.config.lamb * center_loss
        result["logs"]["loss_center"] = float(center_loss.detach())
        with torch.no_grad():
            feat, weights, target = (gather_cat(t) for t in (feat.detach(), weights.detach(), target))
            result["center_direction"] = center_update_direction(feat, weights, self.centers, target)
            self.dacl_stats.add("attention", weights)
            self.dacl_stats.add("attention_above_half", (weights > 0.5).float())
        return result

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        logs = SCNMethod.on_epoch_end(self, epoch)
        return {**logs, **self.dacl_stats.summary()}


def combined_config(scn: SCNConfig) -> SCNDACLConfig:
    return SCNDACLConfig(**{f.name: getattr(scn, f.name) for f in fields(scn)}, **DACL_SIZE)


# -- what each epoch and the last epoch measure ---------------------------------------------
def predict_all(method: Method, batches) -> dict[str, torch.Tensor]:
    """Concatenated ``predict`` outputs (expr logits, pooled features, SCN importance) over image batches."""
    out: dict[str, list[torch.Tensor]] = {"expr": [], "feat": [], "importance": []}
    with torch.no_grad():
        for images in batches:
            outputs = method.predict(images)
            for key, kept in out.items():
                if key in outputs:
                    kept.append(outputs[key].float())
    return {k: torch.cat(v) for k, v in out.items() if v}


def split_batches(dataset, size: int = 512):
    """A split's evaluation batches (no augmentation on val / test)."""
    for start in range(0, len(dataset), size):
        yield dataset.__getitems__(list(range(start, min(start + size, len(dataset)))))["image"]


def train_batches(dataset, size: int = 512):
    """The training faces without augmentation (``images`` of an augmented split are the plain faces)."""
    for start in range(0, len(dataset), size):
        yield dataset.images[start:start + size].permute(0, 3, 1, 2).float().div_(255.0)


def compactness(feat: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance to the own class mean over mean distance between class means (lower = more compact)."""
    classes = labels.unique()
    means = torch.stack([feat[labels == k].mean(0) for k in classes])
    intra = (feat - means[torch.searchsorted(classes, labels)]).norm(dim=1).mean()
    return float(intra / torch.pdist(means).mean())


def epoch_scores(method: Method, val, test) -> dict[str, float]:
    """Validation macro-F1 on both label sets; test accuracy, macro-F1 and compactness on FERPlus labels."""
    v, t = predict_all(method, split_batches(val)), predict_all(method, split_batches(test))
    v_pred, t_pred = v["expr"].argmax(1).numpy(), t["expr"].argmax(1).numpy()
    t_true = test.labels["expr"].numpy()
    return {
        "val_f1_ferplus": macro_f1(val.labels["expr"].numpy(), v_pred, 7),
        "val_f1_fer2013": macro_f1(val.info["expr_fer2013"].numpy(), v_pred, 7),
        "test_acc": float((t_pred == t_true).mean()), "test_f1": macro_f1(t_true, t_pred, 7),
        "test_acc_fer2013": float((t_pred == test.info["expr_fer2013"].numpy()).mean()),
        "ratio": compactness(t["feat"], test.labels["expr"]),
    }


def tracked(base: type[Method], test) -> type[Method]:
    """``base`` that, after each epoch, scores val and test (kept for reporting only: selection reads val)
    and after the last epoch keeps its outputs on the un-augmented training faces."""

    class Tracked(base):
        def on_fit_start(self, datasets):
            super().on_fit_start(datasets)
            self.bench = {"val": datasets["val"], "train": datasets["train"], "epochs": [], "train_outputs": None}

        def on_epoch_end(self, epoch: int) -> dict[str, float]:
            logs = super().on_epoch_end(epoch)
            self.eval()
            self.bench["epochs"].append({"epoch": epoch + 1, **epoch_scores(self, self.bench["val"], test)})
            if epoch + 1 == self.context.epochs:
                self.bench["train_outputs"] = predict_all(self, train_batches(self.bench["train"]))
            self.train()
            return logs

    Tracked.__name__ = f"Tracked{base.__name__}"
    return Tracked


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """P(a positive scores lower than a negative) + P(tie) / 2: how well a *low* score flags the positives."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    values = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]  # tied values share their mean rank
    higher = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2  # Mann-Whitney U of the positives
    return float(1.0 - higher / (len(pos) * len(neg)))


def vote_entropy(votes: np.ndarray) -> np.ndarray:
    """Entropy in bits of each face's FERPlus emotion votes."""
    p = votes / np.maximum(votes.sum(1, keepdims=True), 1)
    return -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(1)


def noise_view(method: Method, train) -> dict[str, Any]:
    """The last epoch's view of the training faces against FER2013 / FERPlus disagreement."""
    outputs = method.bench["train_outputs"]
    fer, plus = train.info["expr_fer2013"].numpy(), train.info["expr_ferplus"].numpy()
    disagree = fer != plus
    entropy = vote_entropy(train.info["expr_votes"].numpy())
    bins = [(name, (entropy >= lo) & (entropy < hi)) for lo, hi, name in ENTROPY_BINS]
    p_label = torch.softmax(outputs["expr"], 1)[torch.arange(len(fer)), torch.from_numpy(fer)].numpy()
    scores = {"p_label": p_label}
    if "importance" in outputs:
        scores["importance"] = outputs["importance"].numpy()
    view: dict[str, Any] = {"disagree": float(disagree.mean())}
    for name, score in scores.items():
        view[f"auroc_{name}"] = auroc(score, disagree)
        view[f"auroc_{name}_class"] = {CLASSES[k]: auroc(score[fer == k], disagree[fer == k]) for k in range(7)}
        view[f"auroc_{name}_entropy"] = {b: auroc(score[m], disagree[m]) for b, m in bins}
        view[f"{name}_agree_disagree"] = [float(score[~disagree].mean()), float(score[disagree].mean())]
    if isinstance(method, SCNMethod):
        stored = method.relabels.numpy()
        final = np.where(stored >= 0, stored, fer)
        view["relabels"] = relabel_stats(final, fer, plus, np.ones_like(disagree))
        view["relabels_entropy"] = {b: relabel_stats(final, fer, plus, m) for b, m in bins}
    return view


def relabel_stats(final: np.ndarray, fer: np.ndarray, plus: np.ndarray, among: np.ndarray) -> dict[str, float]:
    """Faces whose label SCN changed (final != FER2013's): count, precision, recall, correct labels broken."""
    changed, disagree = (final != fer) & among, (fer != plus) & among
    return {
        "faces": int(among.sum()), "disagree": int(disagree.sum()), "relabels": int(changed.sum()),
        "precision": float((final[changed] == plus[changed]).mean()) if changed.any() else None,
        "recall": float((final[disagree] == plus[disagree]).mean()) if disagree.any() else None,
        "broken": int((changed & (fer == plus)).sum()),  # a label that agreed with FERPlus, replaced
    }


# -- runs ------------------------------------------------------------------------------------
_SPLITS: dict[str, dict] = {}


def splits_for(config) -> dict:
    """The decoded splits of this label choice, built once per process."""
    key = config.data.options.train_labels
    if key not in _SPLITS:
        _SPLITS[key] = build_datasets(config.data)
    return _SPLITS[key]


def pick(epochs: list[dict], key: str | None) -> dict:
    """The epoch with the best ``key`` (first on ties), or the last one."""
    chosen = max(epochs, key=lambda e: e[key]) if key else epochs[-1]
    return {k: chosen[k] for k in ("epoch", "test_acc", "test_f1", "test_acc_fer2013", "ratio")}


def real_run(job: dict) -> dict:
    """One (variant, seed) on FER2013 / FERPlus."""
    torch.set_num_threads(1)
    overrides = RECIPE + VARIANTS[job["variant"]] + [
        f"data.root={job['fer2013']}", f"data.fer2013_ferplus.ferplus={job['ferplus']}", f"model.backbone={job['backbone']}",
        f"train.epochs={job['epochs']}", f"train.lr={job['lr']}", f"data.seed={job['seed']}", f"train.seed={job['seed']}",
        "train.progress=false", *job["set"],
    ]
    config = load_config(None, overrides)
    base: type[Method] = METHODS.get(config.method.name)
    if job["variant"] == "scn_dacl":
        config.method, base = combined_config(config.method), SCNWithDACL
    datasets = splits_for(config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder) / "run", datasets=datasets, method_class=tracked(base, datasets["test"]))
        metrics = trainer.fit()
        rows = list(csv.DictReader((Path(folder) / "run" / "log.csv").open()))
    method, epochs = trainer.method, trainer.method.bench["epochs"]
    result = {
        **job, "seconds": time.perf_counter() - started, "epochs_log": epochs,
        "best_ferplus": pick(epochs, "val_f1_ferplus"), "best_fer2013": pick(epochs, "val_f1_fer2013"), "last": pick(epochs, None),
        "trainer_best_test_acc": metrics["test"]["expr"]["accuracy"],  # = best_ferplus's: the trainer selects the same way
        "train_faces": len(datasets["train"]), "method_log": rows[-1],
    }
    if config.data.options.train_labels == "fer2013":
        result["noise"] = noise_view(method, datasets["train"])
    return result


def demo_run(job: dict) -> dict:
    """One (variant, seed) in ``facemtl demo``'s regime with 35 % flipped expression labels."""
    torch.set_num_threads(1)
    overrides = DEMO_VARIANTS[job["variant"]] + [
        f"data.label_noise={job['noise']}", f"data.seed={job['seed']}", f"train.seed={job['seed']}", "train.progress=false",
        *job["set"],
    ]
    config = load_config(None, overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder) / "run")
        metrics = trainer.fit()
        rows = list(csv.DictReader((Path(folder) / "run" / "log.csv").open()))
        load_model_state(trainer.method, load_checkpoint(trainer.last_path), trainer.tasks)
        last = trainer.evaluate_split("test")["expr"]
    relabels = sum(float(r.get("relabels") or 0) for r in rows)
    restored = sum(float(r.get("relabels_restored") or 0) for r in rows)
    return {
        **job, "seconds": time.perf_counter() - started, "best_acc": metrics["test"]["expr"]["accuracy"],
        "best_f1": metrics["test"]["expr"]["macro_f1"], "last_acc": last["accuracy"], "best_epoch": metrics["best_epoch"],
        "relabels": relabels, "relabel_precision": restored / relabels if relabels else None,
        "importance_clean_flipped": [rows[-1].get("importance_clean_mean"), rows[-1].get("importance_flipped_mean")],
    }


# -- tables ----------------------------------------------------------------------------------
def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def real_table(results: list[dict]) -> dict:
    """Print the accuracy, noise-view and relabel tables; return them as JSON."""
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    runs = {v: [r for r in results if r["variant"] == v] for v in variants}
    print(f"{'variant':<10} {'seeds':>5} | {'sel. FERPlus Valid':>18} {'sel. FER2013 PublicTest':>23} {'last epoch':>14} | "
          f"{'macro-F1 (FERPlus sel.)':>23} {'intra/inter':>11} | {'min/run':>7}")
    summary: dict[str, Any] = {}
    for v, rs in runs.items():
        row = {f"{sel}_{key}": [r[sel][key] for r in rs] for sel in ("best_ferplus", "best_fer2013", "last")
               for key in ("test_acc", "test_f1", "ratio", "epoch")}
        row["seeds"], row["minutes"] = [r["seed"] for r in rs], _mean([r["seconds"] / 60 for r in rs])
        summary[v] = row
        print(f"{v:<10} {len(rs):>5} | {mean_std(row['best_ferplus_test_acc'], 100):>18} "
              f"{mean_std(row['best_fer2013_test_acc'], 100):>23} {mean_std(row['last_test_acc'], 100):>14} | "
              f"{mean_std(row['best_ferplus_test_f1'], 100):>23} {mean_std(row['best_ferplus_ratio']):>11} | {row['minutes']:>7.1f}")
    print("test = FER2013 PrivateTest with FERPlus majority labels; accuracy % mean ± std over seeds; "
          "selection by validation macro-F1; intra/inter: test embeddings on FERPlus labels at the FERPlus-selected epoch")
    noisy = {v: [r for r in rs if "noise" in r] for v, rs in runs.items()}
    print(f"\n{'variant':<10} | {'AUROC low p(label)':>18} {'AUROC low importance':>20} | "
          + " ".join(f"{c[:8]:>8}" for c in CLASSES) + " | " + " ".join(f"{b:>11}" for _, _, b in ENTROPY_BINS))
    for v, rs in noisy.items():
        if not rs:
            continue
        score = "importance" if "auroc_importance" in rs[0]["noise"] else "p_label"
        per_class = [_mean([r["noise"][f"auroc_{score}_class"][c] for r in rs]) for c in CLASSES]
        per_bin = [_mean([r["noise"][f"auroc_{score}_entropy"][b] for r in rs]) for _, _, b in ENTROPY_BINS]
        summary[v]["auroc_p_label"] = [r["noise"]["auroc_p_label"] for r in rs]
        summary[v]["auroc_importance"] = [r["noise"].get("auroc_importance") for r in rs]
        summary[v][f"auroc_{score}_class"], summary[v][f"auroc_{score}_entropy"] = per_class, per_bin
        print(f"{v:<10} | {mean_std(summary[v]['auroc_p_label']):>18} "
              f"{mean_std([a for a in summary[v]['auroc_importance'] if a is not None]):>20} | "
              + " ".join(f"{_fmt(a):>8}" for a in per_class) + " | " + " ".join(f"{_fmt(a):>11}" for a in per_bin))
    print("AUROC of a low score for 'FER2013 and FERPlus disagree' on the training faces (last epoch, mean over seeds); "
          "per FER2013 class and by FERPlus vote entropy: importance for SCN variants, p(label) otherwise")
    print(f"\n{'variant':<10} {'faces':<12} {'disagree':>8} | {'relabels':>8} {'precision':>9} {'recall':>7} {'broken':>7}")
    for v, rs in noisy.items():
        if not rs or "relabels" not in rs[0]["noise"]:
            continue
        groups = [("all", [r["noise"]["relabels"] for r in rs])]
        groups += [(b, [r["noise"]["relabels_entropy"][b] for r in rs]) for _, _, b in ENTROPY_BINS]
        summary[v]["relabels"] = {}
        for name, stats in groups:
            cell = {k: _mean([s[k] for s in stats]) for k in ("faces", "disagree", "relabels", "precision", "recall", "broken")}
            summary[v]["relabels"][name] = cell
            print(f"{v:<10} {name:<12} {_fmt(cell['disagree'], '{:.0f}'):>8} | {_fmt(cell['relabels'], '{:.0f}'):>8} "
                  f"{_fmt(cell['precision']):>9} {_fmt(cell['recall']):>7} {_fmt(cell['broken'], '{:.0f}'):>7}")
    print("relabels: training faces whose final label differs from FER2013's; precision: share equal to the FERPlus "
          "majority; recall: share of the disagreeing faces whose final label is FERPlus's; broken: agreeing labels replaced")
    return summary


def demo_table(results: list[dict]) -> dict:
    print(f"{'variant':<10} {'seeds':>5} | {'best-on-val expr acc':>20} {'last epoch':>14} | {'relabels':>8} {'precision':>9} | {'min/run':>7}")
    summary = {}
    for v in DEMO_VARIANTS:
        rs = [r for r in results if r["variant"] == v]
        if not rs:
            continue
        row = {k: [r[k] for r in rs] for k in ("seed", "best_acc", "last_acc", "best_f1", "relabels", "relabel_precision")}
        row["minutes"] = _mean([r["seconds"] / 60 for r in rs])
        summary[v] = row
        print(f"{v:<10} {len(rs):>5} | {mean_std(row['best_acc'], 100):>20} {mean_std(row['last_acc'], 100):>14} | "
              f"{_fmt(_mean(row['relabels']), '{:.0f}'):>8} {_fmt(_mean(row['relabel_precision'])):>9} | {row['minutes']:>7.1f}")
        print(f"{'':<10} {'':>5} | per seed {row['seed']}: best {[round(100 * a, 2) for a in row['best_acc']]}, "
              f"last {[round(100 * a, 2) for a in row['last_acc']]}")
    print("expression accuracy % on the clean test split, mean ± std over seeds; precision: relabels that restored the true label")
    return summary


# -- main ------------------------------------------------------------------------------------
def load_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def print_drops(job: dict) -> dict:
    config = load_config(None, RECIPE + [f"data.root={job['fer2013']}", f"data.fer2013_ferplus.ferplus={job['ferplus']}"])
    records, dropped = join_fer2013_ferplus(config.data)
    counts = {s: {"kept": int((records.split == i).sum()), **dict(dropped[s])} for i, s in enumerate(("train", "val", "test"))}
    for split, count in counts.items():
        print(f"{split}: {count['kept']} faces kept; dropped: " + ", ".join(f"{n} {k}" for k, n in count.items() if k != "kept"))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="JSON lines, one per finished (variant, seed); finished ones are skipped")
    parser.add_argument("--json", help="write the summary tables and every run here")
    parser.add_argument("--table", action="store_true", help="only print the table of --results")
    parser.add_argument("--demo", action="store_true", help="the synthetic demo regime instead of FER2013 / FERPlus")
    parser.add_argument("--variants", nargs="+", help="default: every variant of the regime")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--noise", type=float, default=0.35, help="--demo: fraction of training expression labels flipped")
    parser.add_argument("--fer2013", default=str(DATA / "fer2013"))
    parser.add_argument("--ferplus", default=str(DATA / "ferplus"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    args = parser.parse_args()
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = args.variants or list(DEMO_VARIANTS if args.demo else VARIANTS)
    job_base = {"set": args.set} | ({"noise": args.noise} if args.demo else {
        "epochs": args.epochs, "lr": args.lr, "backbone": args.backbone, "fer2013": args.fer2013, "ferplus": args.ferplus})
    drops = None if args.demo or args.table else print_drops(job_base)
    if not args.table:
        done = {(r["variant"], r["seed"]) for r in load_results(path)}
        for seed in args.seeds:
            for variant in names:
                if (variant, seed) in done:
                    print(f"{variant} seed {seed}: in {path}, skipped")
                    continue
                result = (demo_run if args.demo else real_run)({**job_base, "variant": variant, "seed": seed})
                with path.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(f"{variant} seed {seed}: {result['seconds'] / 60:.1f} min, written to {path}", flush=True)
    results = load_results(path)
    demo = args.demo or (bool(results) and "epochs_log" not in results[0])
    summary = demo_table(results) if demo else real_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "dropped": drops, "summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
