"""FER2013's faces joined to FERPlus's votes (``data.name=fer2013_ferplus``), on a few fake rows
written in the released formats: the folder export with ``fer2013_folder_map.csv`` (duplicates
flagged), and Kaggle's ``fer2013.csv`` row-aligned with ``fer2013new.csv``."""

from pathlib import Path

import numpy as np
import pytest
from fake_datasets import FERPLUS_HEADER, fer_pixels, write_fer2013_folders, write_lines

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats.ferplus import join_fer2013_ferplus
from facemtl.errors import FacemtlError
from facemtl.labels import EXPR_CLASSES_8

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#            neutral happiness surprise sadness anger disgust fear contempt unknown NF
HAPPY = [0, 8, 0, 0, 0, 0, 0, 0, 2, 0]
SAD = [2, 0, 0, 8, 0, 0, 0, 0, 0, 0]
FEAR = [0, 0, 3, 0, 0, 0, 7, 0, 0, 0]
NF = [0, 2, 0, 0, 0, 0, 0, 0, 0, 8]
CONTEMPT = [3, 0, 0, 0, 0, 0, 0, 7, 0, 0]
SPLIT_VOTE = [4, 4, 2, 0, 0, 0, 0, 0, 0, 0]  # no majority; plurality: neutral (first column)

# (JPEG, FERPlus image or "", duplicate flag, FERPlus usage, votes)
FOLDER_ROWS = [
    ("train/happy/Training_1.jpg", "fer0000001.png", 0, "Training", HAPPY),
    ("train/angry/Training_2.jpg", "fer0000002.png", 0, "Training", SAD),  # FER2013 angry, FERPlus sad
    ("train/sad/Training_3.jpg", "fer0000003.png", 1, "Training", SAD),  # the same picture twice,
    ("train/angry/Training_4.jpg", "fer0000003.png", 1, "Training", SAD),  # with two FER2013 labels
    ("train/fear/Training_5.jpg", "fer0000005.png", 0, "Training", NF),  # not a face: dropped
    ("train/happy/Training_6.jpg", "", 0, "Training", None),  # no FERPlus match: dropped
    ("train/neutral/Training_7.jpg", "fer0000007.png", 0, "Training", CONTEMPT),  # contempt: dropped (7 classes)
    ("train/surprise/Training_8.jpg", "fer0000008.png", 0, "Training", SPLIT_VOTE),
    ("test/fear/PublicTest_9.jpg", "fer0000009.png", 0, "PublicTest", FEAR),
    ("test/surprise/PrivateTest_10.jpg", "fer0000010.png", 0, "PrivateTest", FEAR),
]


def _names(labels):
    return [EXPR_CLASSES_8[int(c)] for c in labels]


def _write_folder_layout(root: Path) -> None:
    fer, plus = root / "fer2013", root / "ferplus"
    write_fer2013_folders(fer, [r[0] for r in FOLDER_ROWS] + ["train/happy/Training_11.jpg"])  # 11: not in the map
    votes = {name: (usage, v) for _, name, _, usage, v in FOLDER_ROWS if name}
    write_lines(plus / "fer2013new.csv", [FERPLUS_HEADER, *(f"{u},{n},{','.join(map(str, v))}" for n, (u, v) in votes.items()),
                                          "Training,," + ",".join(["0"] * 9 + ["10"])])
    write_lines(plus / "fer2013_folder_map.csv", ["local_path,usage,image_name,fer2013_label,corr,duplicate", *(
        f"{p},{p.split('/')[-1].split('_')[0]},{n},{p.split('/')[1]},{0.999 if n else 0.3},{d}" for p, n, d, _, _ in FOLDER_ROWS)])


def _config(root: Path, *overrides: str):
    return load_config(None, ["data.name=fer2013_ferplus", f"data.root={root / 'fer2013'}",
                              f"data.fer2013_ferplus.ferplus={root / 'ferplus'}", "data.image_size=32", *overrides]).data


def test_folder_join_labels_info_and_drops(tmp_path):
    _write_folder_layout(tmp_path)
    records, dropped = join_fer2013_ferplus(_config(tmp_path))
    train = records.in_split("train")
    assert [p.decode().split("/")[-1] for p in train.paths] == [
        "Training_2.jpg", "Training_4.jpg", "Training_1.jpg", "Training_3.jpg"]  # class folders in name order
    assert _names(train.info["expr_fer2013"]) == ["anger", "anger", "happiness", "sadness"]
    assert _names(train.info["expr_ferplus"]) == ["sadness", "sadness", "happiness", "sadness"]
    assert train.expr.tolist() == train.info["expr_fer2013"].tolist()  # train_labels: fer2013 (default)
    assert train.info["expr_disagree"].tolist() == [True, True, False, False]
    assert train.info["expr_flipped"].tolist() == [True, True, False, False]  # SCN's statistics see the disagreement
    assert train.info["expr_clean"].tolist() == train.info["expr_ferplus"].tolist()
    assert train.info["expr_duplicate"].tolist() == [False, True, False, True]
    assert train.info["expr_votes"][0].tolist() == [2, 0, 8, 0, 0, 0, 0]  # raw counts, AffectNet order
    assert train.groups[1] == train.groups[3]  # the two copies of one picture: one group
    assert dict(dropped["train"]) == {"unknown/NF majority": 1, "no FERPlus image": 1, "contempt (7-class mode)": 1,
                                      "no majority": 1, "not in the folder map": 1}
    test = records.in_split("test")  # FERPlus labels on val and test (defaults)
    assert _names(records.in_split("val").expr) == ["fear"] and _names(test.expr) == ["fear"]
    assert _names(test.info["expr_fer2013"]) == ["surprise"] and test.info["expr_flipped"].tolist() == [False]
    assert records.where(0).endswith("fer2013_folder_map.csv:10")  # a face is listed at its map line


def test_folder_join_duplicates_and_label_choices(tmp_path):
    _write_folder_layout(tmp_path)
    first, dropped = join_fer2013_ferplus(_config(tmp_path, "data.fer2013_ferplus.duplicates=first"))
    assert [p.decode().split("/")[-1] for p in first.in_split("train").paths] == [
        "Training_2.jpg", "Training_4.jpg", "Training_1.jpg"]  # one copy of the picture: the first in path order
    assert dropped["train"]["duplicate copy"] == 1
    none, dropped = join_fer2013_ferplus(_config(tmp_path, "data.fer2013_ferplus.duplicates=drop"))
    assert len(none.in_split("train")) == 2 and dropped["train"]["duplicate copy"] == 2
    plus, _ = join_fer2013_ferplus(_config(tmp_path, "data.fer2013_ferplus.train_labels=ferplus",
                                           "data.fer2013_ferplus.val_labels=fer2013", "data.fer2013_ferplus.mode=plurality"))
    train = plus.in_split("train")
    assert _names(train.expr) == ["sadness", "sadness", "happiness", "sadness", "neutral"]  # + the split vote
    assert not train.info["expr_flipped"].any() and train.info["expr_disagree"].sum() == 3
    assert _names(plus.in_split("val").expr) == ["fear"] and _names(plus.in_split("test").expr) == ["fear"]
    eight, dropped = join_fer2013_ferplus(_config(tmp_path, "data.num_expr_classes=8"))
    assert "contempt" in _names(eight.info["expr_ferplus"]) and "contempt (7-class mode)" not in dropped["train"]


def test_folder_join_builds_batches_and_checks_the_map(tmp_path):
    _write_folder_layout(tmp_path)
    splits = build_datasets(_config(tmp_path))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    batch = splits["train"].__getitems__([0, 1])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["info"]["expr_flipped"].tolist() == [True, True]
    assert batch["labels"]["expr"].tolist() == [6, 6]  # FER2013's angry
    (tmp_path / "ferplus" / "fer2013_folder_map.csv").unlink()
    with pytest.raises(FacemtlError, match="needs the JPEG -> FERPlus image map"):
        build_datasets(_config(tmp_path))
    with pytest.raises(FacemtlError, match="duplicates='twice' is not valid"):
        _config(tmp_path, "data.fer2013_ferplus.duplicates=twice")


def _write_csv_layout(root: Path, usage_mismatch: bool = False) -> None:
    rows = [  # (FER2013 emotion 0-6, Usage, FERPlus image, votes, pixel seed)
        (0, "Training", "fer0000000.png", SAD, 0),  # FER2013 angry, FERPlus sad
        (3, "Training", "fer0000001.png", HAPPY, 1),
        (3, "Training", "fer0000002.png", HAPPY, 1),  # the same pixels again: a duplicate
        (2, "Training", "", [0] * 9 + [10], 2),  # not in FERPlus
        (2, "PublicTest", "fer0000004.png", FEAR, 3),
        (5, "PrivateTest", "fer0000005.png", FEAR, 1),  # the same pixels as row 1, but in another split
    ]
    write_lines(root / "fer2013.csv", ["emotion,pixels,Usage", *(f'{e},"{fer_pixels(s)}",{u}' for e, u, _, _, s in rows)])
    plus = [f"{'PublicTest' if usage_mismatch and i == 0 else u},{n},{','.join(map(str, v))}" for i, (_, u, n, v, _) in enumerate(rows)]
    write_lines(root / "fer2013new.csv", [FERPLUS_HEADER, *plus])


def test_csv_join_is_row_aligned_and_flags_identical_pixels(tmp_path):
    _write_csv_layout(tmp_path)
    config = load_config(None, ["data.name=fer2013_ferplus", f"data.root={tmp_path}", "data.image_size=32"]).data
    records, dropped = join_fer2013_ferplus(config)
    train = records.in_split("train")
    assert _names(train.info["expr_fer2013"]) == ["anger", "happiness", "happiness"]
    assert _names(train.info["expr_ferplus"]) == ["sadness", "happiness", "happiness"]
    assert train.info["expr_duplicate"].tolist() == [False, True, True]
    assert records.in_split("test").info["expr_duplicate"].tolist() == [False]  # copies are counted per split
    assert dropped["train"] == {"no FERPlus image": 1} and records.pixels.shape == (5, 48, 48)
    config.options.duplicates = "first"
    assert len(join_fer2013_ferplus(config)[0].in_split("train")) == 2
    _write_csv_layout(tmp_path, usage_mismatch=True)
    with pytest.raises(FacemtlError, match=r"fer2013\.csv:2: Usage Training here but PublicTest at fer2013new\.csv:2"):
        join_fer2013_ferplus(config)


@pytest.mark.skipif(not (REAL / "ferplus" / "fer2013_folder_map.csv").is_file(), reason="shared FER2013/FERPlus not available")
def test_real_join_agreement_matches_the_data_readme():
    config = load_config(None, ["data.name=fer2013_ferplus", f"data.root={REAL / 'fer2013'}",
                                f"data.fer2013_ferplus.ferplus={REAL / 'ferplus'}"]).data
    records, dropped = join_fer2013_ferplus(config)
    train = records.in_split("train")
    agree = train.info["expr_fer2013"] == train.info["expr_ferplus"]
    assert len(train) == 24940 and round(float(agree.mean()), 2) == 0.68  # data README: 68 % of training faces
    happy = train.info["expr_fer2013"] == 1
    assert round(float(agree[happy].mean()), 2) == 0.93
    assert sum(dropped["train"].values()) == 28709 - 24940 and int(train.info["expr_duplicate"].sum()) == 2072
    assert np.array_equal(train.info["expr_clean"], train.info["expr_ferplus"])
