"""Diagnostic methods and inspections of ``mal_aux.py`` (benchmark-local: nothing here is registered in,
or patches, the library; ``mal_aux.py`` hands the classes to ``Trainer(method_class=...)``).

The methods read the synthetic benchmark's ground truth (``info.expr_flipped``: which expression labels
are corrupted), which no real dataset has:

- :func:`oracle_mal`: MAL whose meta-net reads the corrupted flag (perfect, or an imperfect detector);
- :class:`FilteredPlain`: fixed weighting with the corrupted labels dropped (the ideal 0/1 weighting);
- :func:`history_filtered_plain`: fixed weighting dropping the labels with the lowest confidence history
  (a hand-made small-loss selection on MAL's ``dynamics`` signal, the noise rate given);
- :func:`plain_without_meta`: fixed weighting never trained on MAL's meta faces (the paper's protocol).

The inspections (:func:`history_separation`) measure, at the best checkpoint, how well each per-face history
tells clean from corrupted faces and which faces MAL's weights lower.
"""

from __future__ import annotations

from typing import Any

import torch

from facemtl.losses.meta import expr_sample_losses
from facemtl.methods import MALMethod, PlainMethod
from facemtl.methods.mal import HISTORY_TASKS, FaceHistory, MALConfig, draw_meta_set, drop_faces


class OracleMAL(MALMethod):
    """Diagnostic: the meta-net reads the benchmark's corrupted-label flag, one-hot ``[clean, corrupted]``
    (needs ``method.meta_input=loss``, the two-column input).

    ``error`` and ``from_epoch`` make it an imperfect detector, to tell which property of the perfect flag a
    real input lacks: the flag is wrong for a fixed ``error`` fraction of the faces, drawn at random (a
    detector of AUC ``1 - error``) or, with ``error_on`` weak, put on the clean faces with the weakest
    expression, neutral ones first (the faces the confidence history lowers with the corrupted ones), and
    hidden (``[0.5, 0.5]`` for every face: uniform weights) for the first ``from_epoch`` epochs (a detector
    that needs the model trained first)."""

    error = 0.0
    error_on = "random"  # random | weak (the clean faces with the weakest expression, neutral first)
    from_epoch = 0

    def on_fit_start(self, datasets: Any) -> None:
        super().on_fit_start(datasets)
        train = datasets["train"]
        draw = torch.rand(len(train.mask["expr"]), generator=torch.Generator().manual_seed(self.config.meta_seed + 7))
        self.wrong_flag = draw < self.error
        if self.error_on == "weak":  # as many wrong flags, on the clean faces with the weakest expression
            clean = train.mask["expr"].bool() & ~train.info["expr_flipped"].bool()
            order = torch.where(clean, train.info["expr_intensity"] + 1e-6 * draw, float("inf")).argsort()
            self.wrong_flag = torch.zeros_like(self.wrong_flag)
            self.wrong_flag[order[:int(self.error * len(draw))]] = True

    def meta_inputs(self, outputs: dict, entries: dict, batch: dict) -> torch.Tensor:
        flipped = batch["info"]["expr_flipped"].bool() ^ self.wrong_flag[batch["index"].cpu()].to(batch["index"].device)
        flipped = flipped.to(outputs["feat"].dtype)[:, None]
        if self.in_first_epochs(self.from_epoch):
            flipped = torch.full_like(flipped, 0.5)
        return torch.cat([1 - flipped, flipped], dim=1)


def oracle_mal(error: float = 0.0, error_on: str = "random", from_epoch: int = 0) -> type[OracleMAL]:
    """An :class:`OracleMAL` whose flag is wrong for ``error`` of the faces (``error_on``) and hidden for
    ``from_epoch`` epochs."""
    return type("OracleMAL", (OracleMAL,), {"error": error, "error_on": error_on, "from_epoch": from_epoch})


class FilteredPlain(PlainMethod):
    """Diagnostic: fixed weighting with the corrupted expression labels dropped, the ideal 0/1
    per-sample weighting that MAL's meta-net could at best learn (what reweighting can gain)."""

    def training_step(self, batch: dict) -> dict:
        mask = batch["mask"]["expr"]
        clean = (mask.bool() & ~batch["info"]["expr_flipped"].bool()).to(mask.dtype)
        return super().training_step({**batch, "mask": {**batch["mask"], "expr": clean}})


def standardize_within_label(values: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """``values [N]`` standardised within each label class: each value minus the mean over the ``counted``
    faces with the same label, over their std (0, the class mean, for a face without a label, ``labels < 0``,
    or not counted: an unvisited face has no history to judge).

    Args:
        values: one value per face.
        labels: each face's class, -1 for none.
        counted: ``[N]`` bool, the faces whose values enter their class's mean and std.
    """
    has_label = labels >= 0
    classes = int(labels.max()) + 1 if bool(has_label.any()) else 1
    label = labels.clamp_min(0)
    keep = (counted & has_label).to(values.dtype)
    count = torch.zeros(classes, dtype=values.dtype, device=values.device).index_add_(0, label, keep)
    mean = torch.zeros_like(count).index_add_(0, label, keep * values) / count.clamp_min(1)
    # two passes: a class's spread may be tiny beside its mean, where E[x^2] - E[x]^2 cancels in float32
    squares = torch.zeros_like(count).index_add_(0, label, keep * (values - mean[label]) ** 2)
    std = (squares / count.clamp_min(1)).sqrt().clamp_min(1e-6)
    return torch.where(has_label & counted, (values - mean[label]) / std[label], 0.0)


class HistoryFilteredPlain(PlainMethod):
    """Diagnostic: fixed weighting that drops the expression labels whose confidence history is among the
    lowest ``drop_fraction`` (the benchmark's noise rate), after ``from_epoch`` epochs on every label. The
    history is MAL's ``dynamics`` signal, each face's mean ``p(label)`` over its visits, standardised within
    its label (:func:`standardize_within_label`), so the selection is what the meta-net could learn from that
    input with a hard threshold and the noise rate given."""

    drop_fraction = 0.4
    from_epoch = 1  # epochs trained on every label before the selection starts (1: every face seen once)

    def on_fit_start(self, datasets: Any) -> None:
        train = datasets["train"]
        self.confidence = FaceHistory(len(train.mask["expr"]), 1)
        self.face_labels = torch.where(train.mask["expr"].bool(), train.labels["expr"].long(), -1)
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


def history_filtered_plain(drop_fraction: float, from_epoch: int) -> type[HistoryFilteredPlain]:
    """A :class:`HistoryFilteredPlain` dropping ``drop_fraction`` of the labels from epoch ``from_epoch`` on."""
    return type("HistoryFilteredPlain", (HistoryFilteredPlain,), {"drop_fraction": drop_fraction, "from_epoch": from_epoch})


class PlainWithoutMetaFaces(PlainMethod):
    """Baseline under the paper's protocol, where the meta set is AU data outside the training set:
    fixed weighting that never trains on the faces MAL holds out as its meta set (same seeded draw of
    ``meta_size`` faces), so MAL's only extra is *using* them to weight the rest."""

    meta_size = MALConfig.meta_size

    def on_fit_start(self, datasets: Any) -> None:
        self.meta_faces = draw_meta_set(datasets["train"].mask["au"], self.meta_size, MALConfig.meta_seed)

    def training_step(self, batch: dict) -> dict:
        return super().training_step(drop_faces(batch, self.meta_faces))


def plain_without_meta(meta_size: int) -> type[PlainWithoutMetaFaces]:
    """A :class:`PlainWithoutMetaFaces` leaving out MAL's ``meta_size`` meta faces."""
    return type("PlainWithoutMetaFaces", (PlainWithoutMetaFaces,), {"meta_size": meta_size})


# -- inspections at the best checkpoint ----------------------------------------------------
def separation_auc(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """P(a clean face's value > a corrupted face's), ties counting half: 0.5 = no separation."""
    clean, corrupted = clean.double()[:, None], corrupted.double()[None, :]
    return float(((clean > corrupted).double() + 0.5 * (clean == corrupted).double()).mean())


def history_separation(trainer: Any, _metrics: dict, _rows: list[dict]) -> dict:
    """How well each per-face history MAL kept tells clean from corrupted expression labels at the end
    (AUC over the training faces with an expression label): what the meta-net *could* learn from it; and
    the final expression weights by expression intensity (:func:`weights_by_intensity`) and label."""
    method, train = trainer.method, trainer.train_set
    flipped, labelled = train.info["expr_flipped"].bool(), train.mask["expr"].bool()
    out, expr = {}, HISTORY_TASKS.index("expr")
    expr_labels = torch.where(labelled, train.labels["expr"].long(), -1)
    histories = {"confidence": getattr(method, "label_confidence", None),
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
    (``labels``: -1 for none): whether a meta-net weights whole classes besides telling corrupted labels apart."""
    out = {}
    for label in labels[labels >= 0].unique().tolist():
        for kind, rows in (("clean", (labels == label) & ~flipped), ("flipped", (labels == label) & flipped)):
            if bool(rows.any()):
                out[f"final_weight_{kind}_label{label}"] = float(weights[rows].mean())
    return out
