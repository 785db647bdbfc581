"""Landmark datasets (300-W .pts, dlib imglab XML, real and fake) and the generic CSV format."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import face_points, write_dlib_xml, write_image, write_lines, write_pts

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats.w300 import read_pts
from facemtl.errors import FacemtlError

SPLITS = ("train", "val", "test")
REAL_DLIB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media" / "dlib68"


def _load(name, root, *overrides):
    config = load_config(None, [f"data.name={name}", f"data.root={root}", "data.image_size=32", *overrides])
    return build_datasets(config.data, SPLITS)


def test_pts_with_and_without_header(tmp_path):
    points = face_points(50, 40, 20)
    write_pts(tmp_path / "a.pts", points, header=True)
    write_pts(tmp_path / "b.pts", points, header=False)
    assert np.allclose(read_pts(tmp_path / "a.pts"), points, atol=1e-3)
    assert np.allclose(read_pts(tmp_path / "b.pts"), points, atol=1e-3)
    write_lines(tmp_path / "c.pts", ["version: 1", "n_points: 68", "{", "1 2", "}"])
    with pytest.raises(ValueError, match="n_points says 68 but 1 points follow"):
        read_pts(tmp_path / "c.pts")


def _w300(tmp_path):
    layout = {"afw/1.jpg": True, "helen/trainset/2.jpg": False, "lfpw/trainset/3.png": True,
              "helen/testset/4.jpg": True, "ibug/5.jpg": False, "lfpw/testset/6.jpg": True}
    for i, (rel, header) in enumerate(layout.items()):
        write_image(tmp_path / rel, 100, 100, seed=i)
        write_pts((tmp_path / rel).with_suffix(".pts"), face_points(50, 50, 20), header=header)


@pytest.mark.parametrize("subset, test_count", [("", 3), ("common", 2), ("challenging", 1)])
def test_300w_standard_splits(tmp_path, subset, test_count):
    _w300(tmp_path)
    splits = _load("300w", tmp_path, f"data.300w.subset={subset}", "data.num_landmarks=68", "data.val_fraction=0.0")
    assert len(splits["train"]) == 3 and len(splits["test"]) == test_count
    lmk = splits["train"].labels["lmk"]
    assert lmk.shape == (3, 68, 2) and float(lmk.min()) > 0.1 and float(lmk.max()) < 0.9  # landmark box + 20% margin
    five = _load("300w", tmp_path, "data.val_fraction=0.0")["train"]
    assert five.labels["lmk"].shape == (3, 5, 2) and five.landmark_template() is not None


def test_300w_missing_image_and_wrong_point_count(tmp_path):
    _w300(tmp_path)
    (tmp_path / "afw" / "1.jpg").unlink()
    with pytest.raises(FacemtlError, match=r"afw/1\.pts: no image next to it"):
        _load("300w", tmp_path, "data.num_landmarks=68")
    write_image(tmp_path / "afw" / "1.jpg", 100, 100)
    write_pts(tmp_path / "afw" / "1.pts", face_points(50, 50, 20, count=5))
    with pytest.raises(FacemtlError, match=r"1\.pts: 5 points, expected 68"):
        _load("300w", tmp_path, "data.num_landmarks=68")


def test_dlib_xml_fake_boxes_points_and_ignore(tmp_path):
    pts = face_points(60, 50, 15)
    write_dlib_xml(tmp_path / "training.xml", {"a.jpg": [(30, 40, 40, 40, pts), (0, 0, 20, 20, None)]})
    write_dlib_xml(tmp_path / "testing.xml", {"b.jpg": [(30, 40, 40, 40, pts)]})
    text = (tmp_path / "testing.xml").read_text().replace("<box top='30'", "<box ignore='1' top='30'", 1)
    (tmp_path / "testing.xml").write_text(text)
    splits = _load("dlib_xml", tmp_path, "data.num_landmarks=68", "data.val_fraction=0.0", "data.load=lazy")
    train = splits["train"]
    assert len(train) == 2 and len(splits["test"]) == 0
    assert train.mask["lmk"].tolist() == [True, False]  # a box without parts: no landmark label
    assert train.rects[0].tolist() == [32, 22, 56]  # 40x40 box + 20% each side
    assert torch.allclose(train.labels["lmk"][0, 0], torch.tensor([(68 - 32) / 56, (50 - 22) / 56]), atol=1e-3)
    training = (tmp_path / "training.xml").read_text()
    (tmp_path / "training.xml").write_text(training.replace("x='68'", "x='sixty-eight'", 1))
    with pytest.raises(FacemtlError, match=r"training\.xml:\d+: malformed <part>"):
        _load("dlib_xml", tmp_path, "data.num_landmarks=68")


@pytest.mark.skipif(not REAL_DLIB.is_dir(), reason="shared dlib68 folder not available")
def test_dlib_xml_real_files():
    splits = _load("dlib_xml", REAL_DLIB, "data.num_landmarks=68", "data.load=lazy")
    assert len(splits["train"]) + len(splits["val"]) == 18 and len(splits["test"]) == 25
    test = splits["test"]
    assert bool(test.mask["lmk"].all())
    lmk = test.labels["lmk"]
    assert 0.0 < float(lmk.min()) and float(lmk.max()) < 1.0  # every point inside its crop
    batch = test.__getitems__(list(range(len(test))))
    assert batch["image"].shape == (25, 3, 32, 32)


CSV_HEADER = "path,split,group,box_x,box_y,box_w,box_h,expr,AU1,AU12,valence,arousal,landmarks,attr_gender,attr_hat"


def _csv(tmp_path, rows):
    for i in range(3):
        write_image(tmp_path / "img" / f"{i}.jpg", 60, 60, seed=i)
    return write_lines(tmp_path / "faces.csv", [CSV_HEADER, *rows])


def test_generic_csv_every_column_and_empty_cells(tmp_path):
    lmk = ";".join(f"{x};{y}" for x, y in [(20, 20), (40, 20), (30, 30), (22, 40), (38, 40)])
    path = _csv(tmp_path, [
        f"img/0.jpg,train,s1,10,10,40,40,happiness,1,0,0.5,-0.5,{lmk},female,yes",
        "img/1.jpg,train,s2,,,,,3,9,,,,,0,no",
        "img/2.jpg,test,s3,,,,,,,1,,,,,",
    ])
    splits = _load("csv", path, "data.val_fraction=0.0")
    train, test = splits["train"], splits["test"]
    spaces = train.label_spaces
    assert spaces.au_names == ("AU1", "AU12") and spaces.attributes == {"gender": ("male", "female"), "hat": ("no", "yes")}
    assert train.labels["expr"].tolist() == [1, 3] and train.mask["expr"].tolist() == [True, True]
    assert train.mask["au"].tolist() == [[True, True], [False, False]]  # 9 = not coded, empty = missing
    assert train.mask["va"].tolist() == [True, False] and train.mask["lmk"].tolist() == [True, False]
    assert torch.allclose(train.labels["lmk"][0, 0], torch.tensor([0.25, 0.25]))  # box 10..50, point 20
    assert train.labels["attr"].tolist() == [[1, 1], [0, 0]]
    assert not test.mask["expr"].any() and test.labels["au"][0].tolist() == [0, 1] and test.mask["au"][0].tolist() == [
        False, True]


def test_generic_csv_without_split_column_carves_by_group_and_reports_bad_rows(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.jpg", 30, 30)
    write_lines(tmp_path / "labels.csv", ["path,group,expr", *(f"{i % 3}.jpg,s{i % 5},{i % 7}" for i in range(40))])
    splits = _load("csv", tmp_path, "data.val_fraction=0.2", "data.test_fraction=0.2")
    assert sum(len(s) for s in splits.values()) == 40 and len(splits["test"]) > 0 and len(splits["val"]) > 0
    write_lines(tmp_path / "labels.csv", ["path,expr", "0.jpg,smirk"])
    with pytest.raises(FacemtlError, match=r"labels\.csv:2: expr 'smirk' is neither a class name \(neutral, "):
        _load("csv", tmp_path)
