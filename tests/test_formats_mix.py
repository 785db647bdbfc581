"""Mixing datasets, ``facemtl data check``, and one tiny training epoch on fake real-format data."""

import json

import numpy as np
import pytest
import torch
from fake_datasets import write_bp4d, write_lines, write_rafdb

from facemtl.cli import main
from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.errors import FacemtlError

SPLITS = ("train", "val", "test")


def _fakes(tmp_path, n_raf=20):
    raf = {f"train_{i:05d}.jpg": 1 + (i % 2) * 3 for i in range(1, n_raf + 1)}  # surprise / happiness
    raf.update({f"test_{i:04d}.jpg": 4 for i in range(1, 5)})
    write_rafdb(tmp_path / "raf", raf)
    row = [1, 0, 9, 1, 0, 0, 1, 0, 0, 1, 0, 9, 9]
    write_bp4d(tmp_path / "bp4d", {f"{s}_T1": [row] * 3 for s in ("F001", "M011", "F007", "F002")}, )
    return tmp_path / "raf", tmp_path / "bp4d"


def _mix(raf, bp4d, *overrides, raf_extra="", bp4d_extra="", bp4d_options=""):
    sources = (f"[{{name: rafdb, root: '{raf}'{raf_extra}}}, "
               f"{{name: bp4d, root: '{bp4d}', bp4d: {{au_ids: [1, 12]{bp4d_options}}}{bp4d_extra}}}]")
    config = load_config(None, ["data.name=mix", f"data.mix.sources={sources}", "data.image_size=32", "data.load=lazy",
                                *overrides])
    return build_datasets(config.data, SPLITS)


def test_mix_unions_label_spaces_and_keeps_each_source_masks(tmp_path):
    raf, bp4d = _fakes(tmp_path)
    splits = _mix(raf, bp4d, "data.val_fraction=0.0", bp4d_options=", fold: 1")
    train = splits["train"]
    assert train.label_spaces.au_names == ("AU1", "AU12")
    assert train.composition() == {"rafdb": 20, "bp4d": 9} and len(train) == 29
    source = train.info["source"]
    assert bool(train.mask["expr"][source == 0].all()) and not train.mask["expr"][source == 1].any()
    assert not train.mask["au"][source == 0].any() and bool(train.mask["au"][source == 1].all())
    batch = train.__getitems__([0, 25, 3])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["index"].tolist() == [0, 25, 3]
    assert batch["mask"]["expr"].tolist() == [True, False, True] and batch["labels"]["au"][1].tolist() == [1, 1]
    assert torch.equal(train.images[[0, 25, 3]].permute(0, 3, 1, 2).float().div(255), batch["image"])
    assert len(splits["test"]) == 4 + 3  # RAF-DB test + BP4D fold-1 test subject F007


def test_mix_weights_and_class_balance_set_the_epoch_composition(tmp_path, capsys):
    raf, bp4d = _fakes(tmp_path, n_raf=30)
    splits = _mix(raf, bp4d, "data.val_fraction=0.0", raf_extra=", weight: 3", bp4d_extra=", weight: 1")
    train = splits["train"]
    assert train.composition() == {"rafdb": round(39 * 0.75), "bp4d": 39 - round(39 * 0.75)}  # 3:1 of 39
    assert "mix train epoch: rafdb 29 (74.4%), bp4d 10 (25.6%)" in capsys.readouterr().out
    assert len(splits["val"]) == 0 and splits["test"].composition() == {"rafdb": 4, "bp4d": 3}
    first = train.order.copy()
    train.set_epoch(1)
    assert not np.array_equal(first, train.order) and train.composition()["rafdb"] == 29
    # RAF-DB faces are 2:1 happiness:surprise here; class_balance=1 draws both about equally.
    raf_only = _fakes(tmp_path / "b", n_raf=300)[0]
    balanced = build_datasets(load_config(None, [
        "data.name=mix", f"data.mix.sources=[{{name: rafdb, root: '{raf_only}'}}]", "data.mix.class_balance=1.0",
        "data.val_fraction=0.0", "data.load=lazy"]).data, ("train",))["train"]
    counts = np.bincount(balanced.labels["expr"][torch.from_numpy(balanced.order)].numpy(), minlength=4)
    assert abs(int(counts[1]) - int(counts[3])) < 60 and counts.sum() == 300
    # a source's own class_balance wins over the mix's
    own = build_datasets(load_config(None, [
        "data.name=mix", f"data.mix.sources=[{{name: rafdb, root: '{raf_only}', class_balance: 1.0}}]",
        "data.val_fraction=0.0", "data.load=lazy"]).data, ("train",))["train"]
    assert np.array_equal(own.order, balanced.order)


def test_mix_config_errors(tmp_path):
    raf, bp4d = _fakes(tmp_path)
    with pytest.raises(FacemtlError, match=r"set weight on every source or on none"):
        _mix(raf, bp4d, raf_extra=", weight: 1")
    with pytest.raises(FacemtlError, match=r"data.mix.sources\[1\].image_size: shared by all sources"):
        _mix(raf, bp4d, bp4d_extra=", image_size: 64")
    # each source is checked against its own format's options, when the config is read
    with pytest.raises(FacemtlError, match=r"^data.mix.sources\[0\] \(bp4d\): data.bp4d.fold=4; expected 1, 2 or 3$"):
        load_config(None, ["data.name=mix", f"data.mix.sources=[{{name: bp4d, root: '{bp4d}', bp4d: {{fold: 4}}}}]"])
    with pytest.raises(FacemtlError, match=r"data.mix.sources\[1\] \(bp4d\): data.fold moved: use data.bp4d.fold$"):
        _mix(raf, bp4d, bp4d_extra=", fold: 1")
    with pytest.raises(FacemtlError, match=r"data.mix.class_balance=-1.0; expected >= 0"):
        _mix(raf, bp4d, "data.mix.class_balance=-1")
    with pytest.raises(FacemtlError, match=r"needs data.mix.sources"):
        load_config(None, ["data.name=mix"])


def test_data_check_lists_every_problem_and_the_distributions(tmp_path, capsys):
    raf, _ = _fakes(tmp_path)
    label_file = raf / "EmoLabel" / "list_patition_label.txt"
    write_lines(label_file, label_file.read_text().splitlines() + ["train_99998.jpg 0", "test_0009.jpg"])
    (raf / "Image" / "aligned" / "train_00002_aligned.jpg").write_bytes(b"truncated")
    (raf / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    recipe = tmp_path / "raf.yaml"
    recipe.write_text(f"data:\n  name: rafdb\n  root: {raf}\n")
    assert main(["data", "check", str(recipe), "--set", "data.val_fraction=0.25"]) == 1
    out = capsys.readouterr().out
    assert "faces                   15           5           4" in out
    assert "happiness" in out and "surprise" in out and "4 problem(s):" in out
    assert "list_patition_label.txt:25: expected '<name>.jpg <label 1-7>', got 'train_99998.jpg 0'" in out
    assert "list_patition_label.txt:26:" in out
    assert "train_00002_aligned.jpg: not a decodable image" in out and "(listed at " in out
    assert "train_00003_aligned.jpg: image file not found" in out


def test_train_cli_runs_one_tiny_epoch_on_fake_rafdb(tmp_path, capsys):
    raf, _ = _fakes(tmp_path, n_raf=40)
    recipe = tmp_path / "raf.yaml"
    recipe.write_text(f"data:\n  name: rafdb\n  root: {raf}\n  image_size: 32\n  load: lazy\n"
                      "model:\n  backbone: test_tiny\n  tasks: [expr]\n"
                      "train:\n  epochs: 1\n  batch_size: 16\n  progress: false\n  warmup_epochs: 0\n")
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and "expr" in metrics["val"] and "expr" in metrics["test"]
    assert (tmp_path / "run" / "predictions.png").is_file()  # the grid reads lazy images too


def test_training_on_a_mix_logs_each_epochs_composition(tmp_path):
    import csv

    from facemtl.engine import Trainer

    raf, bp4d = _fakes(tmp_path, n_raf=30)
    sources = f"[{{name: rafdb, root: '{raf}', weight: 3}}, {{name: bp4d, root: '{bp4d}', bp4d: {{au_ids: [1, 12]}}, weight: 1}}]"
    config = load_config(None, [
        "data.name=mix", f"data.mix.sources={sources}", "data.image_size=32", "data.load=lazy", "data.val_fraction=0.2",
        "model.backbone=test_tiny", "model.tasks=expr,au", "train.epochs=2", "train.batch_size=8", "train.progress=false",
    ])
    Trainer(config, tmp_path / "run").fit()
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    for row in rows:
        shares = {k: int(float(v)) for k, v in row.items() if k.startswith("samples_")}
        assert set(shares) == {"samples_rafdb", "samples_bp4d"} and shares["samples_rafdb"] > 2 * shares["samples_bp4d"]
