"""Expression datasets on fake files in their release formats: RAF-DB, AffectNet, FER2013, FERPlus, ExpW."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import (
    affectnet_row,
    write_affectnet,
    write_expw,
    write_fer2013_csv,
    write_fer2013_folders,
    write_ferplus,
    write_lines,
    write_rafdb,
)

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats.ferplus import ferplus_label
from facemtl.errors import FacemtlError
from facemtl.labels import EXPR_CLASSES_8

REAL_FER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013"


def _load(name, root, *overrides, splits=("train", "val", "test")):
    config = load_config(None, [f"data.name={name}", f"data.root={root}", "data.image_size=32", *overrides])
    return build_datasets(config.data, splits)


def _names(dataset, split_labels):
    return [EXPR_CLASSES_8[c] for c in split_labels]


def test_rafdb_label_mapping_and_splits(tmp_path):
    raf = {"train_00001.jpg": 1, "train_00002.jpg": 2, "train_00003.jpg": 3, "train_00004.jpg": 4,
           "train_00005.jpg": 5, "train_00006.jpg": 6, "train_00007.jpg": 7, "test_0001.jpg": 4}
    write_rafdb(tmp_path, raf)
    splits = _load("rafdb", tmp_path, "data.val_fraction=0.0")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 0, 1]
    expr = splits["train"].labels["expr"].tolist()
    assert [EXPR_CLASSES_8[c] for c in expr] == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert EXPR_CLASSES_8[int(splits["test"].labels["expr"][0])] == "happiness"
    assert not splits["train"].mask["va"].any() and splits["train"].mask["au"].shape == (7, 0)
    carved = _load("rafdb", tmp_path, "data.val_fraction=0.3")
    assert [len(carved[s]) for s in ("train", "val", "test")] == [5, 2, 1]


def test_rafdb_malformed_line_is_a_file_line_error(tmp_path):
    write_rafdb(tmp_path, {"train_00001.jpg": 1})
    write_lines(tmp_path / "EmoLabel" / "list_patition_label.txt", ["train_00001.jpg 1", "train_00002.jpg eight"])
    with pytest.raises(FacemtlError, match=r"list_patition_label\.txt:2: expected '<name>\.jpg <label 1-7>'"):
        _load("rafdb", tmp_path)


def _affectnet(tmp_path):
    train = [affectnet_row(f"1/{i}.jpg", i % 11, valence=-2 if i == 1 else 0.5) for i in range(11)]
    train.append(affectnet_row("1/11.jpg", 1, box=(40, 40, 40, 40)))  # box half outside the 64x64 image
    test = [affectnet_row("2/a.jpg", 6, valence=0.1, arousal=0.2)]
    write_affectnet(tmp_path, train, test, [f"1/{i}.jpg" for i in range(12)] + ["2/a.jpg"])


def test_affectnet_codes_va_landmarks_and_box_crop(tmp_path):
    _affectnet(tmp_path)
    eight = _load("affectnet", tmp_path, "data.num_expr_classes=8", "data.val_fraction=0.0", "data.num_landmarks=68")
    train = eight["train"]
    assert len(train) == 9 and train.labels["expr"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 1]  # 8-10 dropped
    assert train.mask["va"].tolist() == [True, False] + [True] * 7  # valence -2: masked
    assert torch.allclose(train.labels["va"][0], torch.tensor([0.5, -0.25]))
    lmk = train.labels["lmk"][0]  # grid from 10% to 90% of the box, box = crop (margin 0)
    assert torch.allclose(lmk.min(dim=0).values, torch.tensor([0.1, 0.1]), atol=1e-4)
    assert torch.allclose(lmk.max(dim=0).values, torch.tensor([0.9, 0.9]), atol=1e-4)
    assert len(eight["test"]) == 1 and int(eight["test"].labels["expr"][0]) == 6  # validation.csv is the test split
    batch = train.__getitems__([8])
    assert batch["image"].shape == (1, 3, 32, 32) and batch["image"][0, :, 20:, 20:].max() == 0  # padded outside
    seven = _load("affectnet", tmp_path, "data.num_expr_classes=7", "data.val_fraction=0.0")
    assert len(seven["train"]) == 8 and 7 not in seven["train"].labels["expr"].tolist()  # contempt dropped
    assert seven["train"].labels["lmk"].shape == (8, 5, 2)


def test_affectnet_malformed_landmarks_and_va(tmp_path):
    _affectnet(tmp_path)
    csv = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace(",0.5,-0.25", ",1.5,-0.25")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(FacemtlError, match=r"training\.csv:4: valence/arousal \[1\.5, -0\.25\] outside"):
        _load("affectnet", tmp_path)


def test_fer2013_csv_mapping_usage_and_bad_pixels(tmp_path):
    rows = [(0, "Training"), (1, "Training"), (2, "Training"), (3, "Training"), (4, "Training"), (5, "PublicTest"),
            (6, "PrivateTest")]
    write_fer2013_csv(tmp_path, rows)
    splits = _load("fer2013", tmp_path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    assert [EXPR_CLASSES_8[c] for c in splits["train"].labels["expr"].tolist()] == [
        "anger", "disgust", "fear", "happiness", "sadness"]
    assert EXPR_CLASSES_8[int(splits["val"].labels["expr"][0])] == "surprise"
    assert EXPR_CLASSES_8[int(splits["test"].labels["expr"][0])] == "neutral"
    image = splits["train"].__getitems__([0])["image"]
    assert torch.equal(image[0, 0], image[0, 1])  # grey pixels -> 3 equal channels
    text = (tmp_path / "fer2013.csv").read_text().splitlines()
    text[2] = '1,"1 2 3",Training'
    (tmp_path / "fer2013.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(FacemtlError, match=r"fer2013\.csv:3: pixels has 3 values, expected 2304"):
        _load("fer2013", tmp_path)


def test_fer2013_folders_split_by_file_prefix(tmp_path):
    write_fer2013_folders(tmp_path, ["train/angry/Training_1.jpg", "train/happy/Training_2.jpg",
                                     "test/sad/PublicTest_3.jpg", "test/neutral/PrivateTest_4.jpg"])
    splits = _load("fer2013", tmp_path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert splits["train"].labels["expr"].tolist() == [6, 1]
    assert splits["val"].labels["expr"].tolist() == [2] and splits["test"].labels["expr"].tolist() == [0]


@pytest.mark.skipif(not REAL_FER.is_dir(), reason="shared FER2013 folder not available")
def test_fer2013_real_folder_layout():
    splits = _load("fer2013", REAL_FER, "data.load=lazy", "data.image_size=48")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [28709, 3589, 3589]
    counts = np.bincount(splits["train"].labels["expr"].numpy(), minlength=7)
    assert counts.tolist() == [4965, 7215, 4830, 3171, 4097, 436, 3995]  # neutral, happiness, ..., anger
    batch = splits["test"].__getitems__([0, 100, 3000])
    assert batch["image"].shape == (3, 3, 48, 48) and 0 < float(batch["image"].mean()) < 1


@pytest.mark.parametrize(
    "votes, mode, expected",
    [
        ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "majority", "neutral"),
        ([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], "majority", None),  # no majority: dropped
        ([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], "plurality", "neutral"),
        ([0, 1, 0, 0, 0, 0, 0, 0, 6, 3], "plurality", None),  # unknown wins: dropped
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "soft", None),  # not a face
        ([0, 0, 6, 4, 0, 0, 0, 0, 0, 0], "majority", "surprise"),
        ([0, 0, 0, 0, 5, 0, 5, 0, 0, 0], "plurality", "anger"),  # tie: first column (anger before fear)
        ([1, 0, 0, 0, 0, 0, 0, 9, 0, 0], "majority", "contempt"),  # single vote removed as an outlier
    ],
)
def test_ferplus_vote_rules(votes, mode, expected):
    label, _, _ = ferplus_label(np.array(votes), mode, 8)
    assert (EXPR_CLASSES_8[label] if label >= 0 else None) == expected


def test_ferplus_loader_modes_and_soft_labels(tmp_path):
    rows = [("Training", "fer0000000.png", [6, 0, 4, 0, 0, 0, 0, 0, 0, 0]),
            ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # not in FERPlus
            ("Training", "fer0000002.png", [0, 0, 0, 0, 0, 0, 0, 0, 2, 8]),  # NF
            ("PublicTest", "fer0000003.png", [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]),
            ("PrivateTest", "fer0000004.png", [0, 5, 0, 0, 0, 0, 0, 0, 0, 5])]
    write_ferplus(tmp_path, rows)
    splits = _load("ferplus", tmp_path, "data.num_expr_classes=8", "data.ferplus.mode=soft")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    train = splits["train"]
    assert int(train.labels["expr"][0]) == 0
    assert torch.allclose(train.info["expr_soft"][0], torch.tensor([0.6, 0, 0, 0.4, 0, 0, 0, 0]))
    assert int(splits["val"].labels["expr"][0]) == 7 and int(splits["test"].labels["expr"][0]) == 1
    majority = _load("ferplus", tmp_path, "data.num_expr_classes=8")
    assert len(majority["test"]) == 0  # 5 happiness vs 5 NF: no majority
    seven = _load("ferplus", tmp_path, "data.num_expr_classes=7")
    assert len(seven["val"]) == 0  # contempt cannot be a 7-class label


def test_expw_boxes_mapping_and_image_exclusive_splits(tmp_path):
    faces = [(f"img{i // 2}.jpg", 10, 20, 50, 40, i % 7) for i in range(20)]  # 2 faces per image
    write_expw(tmp_path, faces)
    splits = _load("expw", tmp_path, "data.val_fraction=0.2", "data.test_fraction=0.2", "data.load=lazy")
    assert sum(len(s) for s in splits.values()) == 20 and len(splits["test"]) == 4
    train = splits["train"]
    recs = {s: set(splits[s].records.paths.tolist()) for s in splits}
    assert not recs["train"] & recs["val"] and not recs["train"] & recs["test"] and not recs["val"] & recs["test"]
    assert set(train.labels["expr"].tolist()) <= {6, 5, 4, 1, 2, 3, 0}
    assert train.rects[0].tolist() == [20, 10, 30]  # left 20, top 10, right 50, bottom 40: the box itself
    write_lines(tmp_path / "label" / "label.lst", ["img0.jpg 0 10 20 50 40 57.1 9"])
    with pytest.raises(FacemtlError, match=r"label\.lst:1: label 9 is outside 0-6"):
        _load("expw", tmp_path)
