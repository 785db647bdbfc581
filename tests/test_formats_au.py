"""Action-unit / video datasets on fake files in their release formats: BP4D, DISFA, Aff-Wild2."""

import numpy as np
import pytest
import torch
from fake_datasets import write_affwild2_frames, write_affwild2_set, write_bp4d, write_disfa, write_lines

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats import bp4d as bp4d_format
from facemtl.errors import FacemtlError

SPLITS = ("train", "val", "test")


def _load(name, root, *overrides):
    config = load_config(None, [f"data.name={name}", f"data.root={root}", "data.image_size=32", "data.load=lazy", *overrides])
    return build_datasets(config.data, SPLITS)


def _subjects(dataset):
    return {p.decode().split("/")[0] for p in dataset.records.paths.tolist()}


def _bp4d(tmp_path):
    row = [1, 0, 9, 1, 0, 0, 1, 0, 0, 1, 0, 9, 9]  # 12 standard AUs + AU99
    subjects = ["F001", "M007", "F002", "M011", "F003", "F007", "F015", "X001"]  # parts 1, 1, 1, 2, 2, 3, 3, unknown
    write_bp4d(tmp_path, {f"{s}_T1": [row, row] for s in subjects})


@pytest.mark.parametrize("fold, test_subjects", [(1, {"F007", "F015"}), (2, {"M011", "F003"}), (3, {"F001", "M007", "F002"})])
def test_bp4d_folds_are_subject_exclusive(tmp_path, fold, test_subjects):
    _bp4d(tmp_path)
    splits = _load("bp4d", tmp_path, f"data.bp4d.fold={fold}", "data.val_fraction=0.3")
    subjects = {s: _subjects(splits[s]) for s in SPLITS}
    assert subjects["test"] - {"X001"} == test_subjects
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"] and subjects["val"]
    assert set().union(*subjects.values()) == {"F001", "M007", "F002", "M011", "F003", "F007", "F015", "X001"}


def test_bp4d_nine_is_masked_per_au_and_au_selection(tmp_path):
    _bp4d(tmp_path)
    train = _load("bp4d", tmp_path, "data.val_fraction=0.0")["train"]
    assert train.label_spaces.au_names == tuple(f"AU{a}" for a in bp4d_format.STANDARD_AUS)
    assert train.labels["au"][0].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert train.mask["au"][0].tolist() == [True, True, False] + [True] * 8 + [False]
    assert not train.mask["expr"].any()
    picked = _load("bp4d", tmp_path, "data.bp4d.au_ids=[12, 1]")["train"]
    assert picked.label_spaces.au_names == ("AU12", "AU1") and picked.labels["au"][0].tolist() == [1, 1]
    batch = train.__getitems__([0, 1])
    assert batch["image"].shape == (2, 3, 32, 32)


def test_bp4d_malformed_value_and_missing_frames(tmp_path):
    _bp4d(tmp_path)
    csv = tmp_path / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    lines = csv.read_text().splitlines()
    write_lines(csv, [lines[0], lines[1], lines[2].replace(",1,", ",7,", 1)])
    with pytest.raises(FacemtlError, match=r"F001_T1\.csv:3: malformed AU_OCC row \(AU values must be 0, 1 or 9"):
        _load("bp4d", tmp_path)
    write_lines(csv, lines)
    with pytest.raises(FacemtlError, match=r"no frame image found .*set data\.bp4d\.image_template"):
        _load("bp4d", tmp_path, "data.root=" + str(tmp_path / "AUCoding"))


def test_disfa_presence_threshold_folds_and_missing_au_file(tmp_path):
    subjects = {s: {1: [0, 1, 2, 5], 2: [3, 0, 0, 0]} for s in ("SN001", "SN013", "SN003")}
    subjects["SN001"][4] = [2, 2, 2, 2]  # AU4 only coded for SN001
    write_disfa(tmp_path, subjects)
    splits = _load("disfa", tmp_path, "data.disfa.au_ids=[1, 2, 4]", "data.disfa.fold=1", "data.val_fraction=0.0")
    test = splits["test"]
    assert {p.decode().split("/")[1] for p in test.records.paths.tolist()} == {"SN003"}  # fold 1 tests part 3
    assert test.labels["au"][:, 0].tolist() == [0, 0, 1, 1]  # intensity >= 2 is present
    assert test.labels["au"][:, 1].tolist() == [1, 0, 0, 0]
    assert not test.mask["au"][:, 2].any()  # AU4 file missing for SN003: masked
    sn001 = [i for i, p in enumerate(splits["train"].records.paths.tolist()) if b"SN001" in p]
    assert splits["train"].mask["au"][sn001, 2].all()
    with pytest.raises(FacemtlError, match=r"data.disfa.au_ids: AU 3 not annotated in DISFA"):
        _load("disfa", tmp_path, "data.disfa.au_ids=[3]")


def _affwild2(tmp_path):
    au_header = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
    write_affwild2_set(tmp_path, "AU", "Training_Set", "video1", au_header,
                       ["1,0,0,0,0,0,1,0,0,0,0,0", "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1", "0,1,0,0,0,0,0,0,0,0,0,0"])
    write_affwild2_set(tmp_path, "EXPR", "Training_Set", "video1", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise",
                       ["4", "1", "-1", "7"])
    write_affwild2_set(tmp_path, "VA", "Training_Set", "video2_left", "valence,arousal", ["0.5,-0.5", "-5,-5"])
    write_affwild2_set(tmp_path, "VA", "Training_Set", "video2_right", "valence,arousal", ["0.1,0.2"])
    write_affwild2_set(tmp_path, "EXPR", "Validation_Set", "video3", "Neutral,Anger", ["0", "6"])
    write_affwild2_frames(tmp_path, "video1", [1, 2, 3])  # frame 4 has no cropped image
    write_affwild2_frames(tmp_path, "video2_left", [1, 2])
    write_affwild2_frames(tmp_path, "video2_right", [1])
    write_affwild2_frames(tmp_path, "video3", [1, 2])


def test_affwild2_sets_merge_per_frame_with_invalid_masked(tmp_path):
    _affwild2(tmp_path)
    splits = _load("affwild2", tmp_path, "data.val_fraction=0.0")
    train, test = splits["train"], splits["test"]
    paths = [p.decode() for p in train.records.paths.tolist()]
    assert paths == ["cropped_aligned/video1/00001.jpg", "cropped_aligned/video1/00002.jpg",
                     "cropped_aligned/video1/00003.jpg", "cropped_aligned/video2_left/00001.jpg",
                     "cropped_aligned/video2_right/00001.jpg"]  # video2_left frame 2: invalid everywhere
    assert train.labels["expr"][:3].tolist() == [1, 6, 0] and train.mask["expr"][:3].tolist() == [True, True, False]
    assert train.mask["au"][:, 0].tolist() == [True, False, True, False, False]
    assert train.labels["au"][0, 6] == 1 and train.label_spaces.au_names[6] == "AU12"
    assert torch.allclose(train.labels["va"][3], torch.tensor([0.5, -0.5])) and train.mask["va"].tolist() == [
        False, False, False, True, True]
    assert test.labels["expr"].tolist() == [0, 3]  # Validation_Set is the test split; 6 Surprise -> surprise
    val = _load("affwild2", tmp_path, "data.val_fraction=0.5")["val"]
    videos = {p.decode().split("/")[1] for p in val.records.paths.tolist()}
    assert videos in ({"video1"}, {"video2_left", "video2_right"})  # one person's left/right videos stay together


def test_affwild2_sets_and_bad_line(tmp_path):
    _affwild2(tmp_path)
    only_va = _load("affwild2", tmp_path, "data.affwild2.sets=VA", "data.val_fraction=0.0")
    assert len(only_va["train"]) == 2 and only_va["train"].label_spaces.au_names == ()
    write_affwild2_set(tmp_path, "VA", "Training_Set", "video2_right", "valence,arousal", ["0.1"])
    with pytest.raises(FacemtlError, match=r"video2_right\.txt:2: expected 2 comma-separated values, got 1"):
        _load("affwild2", tmp_path)


def test_affwild2_multitask_file(tmp_path):
    header = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
    write_lines(tmp_path / "train_set.txt", [header, "vid1/00001.jpg,0.2,0.3,4,1,0,0,0,0,0,1,0,0,0,0,0",
                                             "vid1/00002.jpg,-5,-5,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1"])
    write_lines(tmp_path / "validation_set.txt", [header, "vid2/00001.jpg,0.0,0.1,7,0,0,0,0,0,0,0,0,0,0,0,1"])
    write_affwild2_frames(tmp_path, "vid1", [1, 2])
    write_affwild2_frames(tmp_path, "vid2", [1])
    splits = _load("affwild2_mtl", tmp_path, "data.val_fraction=0.0")
    train, test = splits["train"], splits["test"]
    assert train.labels["expr"][0] == 1 and train.mask["expr"].tolist() == [True, False]
    assert train.mask["va"].tolist() == [True, False] and not train.mask["au"][1].any()
    assert np.allclose(train.labels["au"][0].numpy()[[0, 6]], [1, 1])
    assert not test.mask["expr"].any() and test.mask["au"].all()  # 7 Other: masked
