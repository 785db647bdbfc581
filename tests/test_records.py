"""Records core: decoding, cropping, lazy == in-memory batches, carved splits, clear errors."""

import cv2
import numpy as np
import pytest
import torch
from fake_datasets import write_image, write_lines, write_rafdb

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.images import crop_resize, face_rects, landmark_labels, read_image
from facemtl.data.record_dataset import RecordDataset
from facemtl.data.records import SPLITS, RecordTable, carve, collect_report, dataset_label_spaces
from facemtl.errors import FacemtlError


def test_read_image_grey_rgba_and_16bit_become_rgb(tmp_path):
    grey = write_image(tmp_path / "g.png", 5, 7, channels=1)
    assert np.array_equal(read_image(str(tmp_path / "g.png")), np.repeat(grey[:, :, None], 3, axis=2))
    bgra = write_image(tmp_path / "a.png", 5, 7, channels=4)
    assert np.array_equal(read_image(str(tmp_path / "a.png")), bgra[:, :, 2::-1])
    deep = (np.arange(5 * 7 * 3, dtype=np.uint16).reshape(5, 7, 3) * 600)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    assert np.array_equal(read_image(str(tmp_path / "d.png")), (deep >> 8).astype(np.uint8)[:, :, ::-1])


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FacemtlError, match=r"missing\.jpg: image file not found"):
        read_image(str(tmp_path / "missing.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(FacemtlError, match=r"bad\.jpg: not a decodable image"):
        read_image(str(tmp_path / "bad.jpg"))


def test_box_crop_pads_at_the_border_and_landmarks_follow_the_crop():
    image = np.zeros((40, 60, 3), np.uint8)
    image[10, 20] = 255  # a landmark pixel
    boxes = np.array([[15, 5, 10, 10], [np.nan] * 4], np.float32)
    points = np.array([[[20, 10]], [[np.nan, np.nan]]], np.float32)
    rects = face_rects(boxes, points, margin=0.5, n=2)
    assert rects.tolist() == [[10, 0, 20], [-1, -1, -1]]  # square of side 2x the box; no box, no points: whole image
    labels = landmark_labels(points, rects)
    assert np.allclose(labels[0], [[0.5, 0.5]]) and np.isnan(labels[1]).all()
    crop = crop_resize(image, rects[0], 20)
    assert crop[10, 10].tolist() == [255, 255, 255]
    border = crop_resize(image, np.array([-5, -5, 10]), 10)  # half outside: zero-padded, position kept
    assert border[:5].max() == 0 and border.shape == (10, 10, 3)


def _rafdb(tmp_path, n=30):
    labels = {f"train_{i:05d}.jpg": 1 + i % 7 for i in range(1, n + 1)}
    labels.update({f"test_{i:04d}.jpg": 1 + i % 7 for i in range(1, 11)})
    write_rafdb(tmp_path, labels)
    return tmp_path


def test_lazy_and_memory_batches_are_identical(tmp_path):
    root = _rafdb(tmp_path)
    common = ["data.name=rafdb", f"data.root={root}", "data.image_size=32"]
    lazy = build_datasets(load_config(None, common + ["data.load=lazy"]).data)
    memory = build_datasets(load_config(None, common + ["data.load=memory"]).data)
    assert isinstance(lazy["train"], RecordDataset) and not isinstance(memory["train"], RecordDataset)
    for split in SPLITS:
        a, b = lazy[split].__getitems__([0, 2, 1]), memory[split].__getitems__([0, 2, 1])
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
        for key in ("labels", "mask", "info"):
            assert a[key].keys() == b[key].keys()
            assert all(torch.equal(a[key][t], b[key][t]) for t in a[key])
    assert lazy["train"].images.shape == memory["train"].images.shape
    assert torch.equal(lazy["train"].images[1], memory["train"].images[1])
    assert torch.equal(lazy["train"].images[[0, 3]], memory["train"].images[[0, 3]])


def test_missing_image_error_names_file_and_annotation_line(tmp_path):
    root = _rafdb(tmp_path)
    (root / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    with pytest.raises(FacemtlError, match=r"train_00003_aligned\.jpg: image file not found.*list_patition_label\.txt:3"):
        build_datasets(load_config(None, ["data.name=rafdb", f"data.root={root}", "data.load=memory"]).data)
    lazy = build_datasets(load_config(None, ["data.name=rafdb", f"data.root={root}", "data.load=lazy"]).data)
    with pytest.raises(FacemtlError, match=r"list_patition_label\.txt:3"):
        for split in SPLITS:
            lazy[split].__getitems__(list(range(len(lazy[split]))))


def test_carve_is_seeded_group_exclusive_and_leaves_test_alone(tmp_path):
    spaces = dataset_label_spaces(load_config(None).data)
    table = RecordTable(spaces, tmp_path)
    subjects = [f"S{i % 10}" for i in range(100)]
    table.extend(tmp_path / "a.txt", range(1, 101), [f"{i}.jpg" for i in range(100)], "train", groups=subjects)
    table.extend(tmp_path / "a.txt", range(101, 111), [f"t{i}.jpg" for i in range(10)], "test")
    records = table.build()
    a = carve(records, "train", "val", 0.2, [0, 2])
    b = carve(records, "train", "val", 0.2, [0, 2])
    c = carve(records, "train", "val", 0.2, [1, 2])
    assert np.array_equal(a.split, b.split) and not np.array_equal(a.split, c.split)
    val, train = a.in_split("val"), a.in_split("train")
    assert len(val) == 20 and not set(val.groups) & set(train.groups)
    assert (a.split[100:] == SPLITS.index("test")).all()


def test_label_noise_and_fraction_touch_train_only(tmp_path):
    root = _rafdb(tmp_path, n=60)
    config = load_config(None, ["data.name=rafdb", f"data.root={root}", "data.label_noise=0.5",
                                "data.label_fraction.expr=0.5", "data.val_fraction=0.0", "data.load=lazy"]).data
    splits = build_datasets(config)
    train = splits["train"]
    assert int(train.info["expr_flipped"].sum()) == 30
    flipped = train.info["expr_flipped"]
    assert torch.all(train.labels["expr"][flipped] != train.info["expr_clean"][flipped])
    assert int(train.mask["expr"].sum()) == 30
    assert int(splits["test"].info["expr_flipped"].sum()) == 0 and bool(splits["test"].mask["expr"].all())


def test_problems_are_collected_not_raised_inside_a_report(tmp_path):
    root = _rafdb(tmp_path)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    write_lines(label_file, label_file.read_text().splitlines() + ["train_99999.jpg 9", "garbage"])
    config = load_config(None, ["data.name=rafdb", f"data.root={root}", "data.load=lazy"]).data
    with pytest.raises(FacemtlError, match=r"list_patition_label\.txt:41: expected"):
        build_datasets(config)
    with collect_report() as report:
        build_datasets(config)
    assert [p.split(": ")[0][-len("label.txt:41"):] for p in report.problems] == ["label.txt:41", "label.txt:42"]
