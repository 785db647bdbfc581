"""MTFL loader: the released line format (fake files and real lines), crops and the mapping back."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import write_image

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.formats.mtfl import crop_to_image, identity, parse_line
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES

REAL_MTFL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtfl"
SPEC_LINE = r"lfw_5590\X.jpg 107.25 147.75 126.25 106.25 140.75 108.75 113.25 143.75 158.75 162.75 1 2 2 3"


def mtfl_line(path: str, offset: float = 0.0, codes: str = "1 2 2 3") -> str:
    """A released-format line for a 64x64 image: all x, then all y, then 4 attribute codes."""
    xs = [20 + offset, 44 + offset, 32 + offset, 23 + offset, 41 + offset]
    ys = [24, 24, 34, 45, 45]
    return f"{path} " + " ".join(f"{v:.6f}" for v in xs + ys) + f" {codes}"


def write_mtfl(root: Path, train: int = 8, test: int = 3) -> Path:
    """``training.txt`` / ``testing.txt`` as released (backslashes, leading spaces, CR LF) + 64x64 images."""
    lines = {"training.txt": [], "testing.txt": []}
    for i in range(train):
        folder = "lfw_5590" if i % 2 else "net_7876"
        name = f"Person_{i % 3}_{i:04d}.jpg" if folder == "lfw_5590" else f"_{i}_0.jpg"
        lines["training.txt"].append(mtfl_line(f"{folder}\\{name}", i % 3, f"{1 + i % 2} {1 + i % 2} 2 {1 + i % 5}"))
        write_image(root / folder / name, 64, 64, seed=i)
    for i in range(test):
        lines["testing.txt"].append(mtfl_line(f"AFLW\\{i:04d}-image{i}.jpg", 1.0, "2 1 1 5"))
        write_image(root / "AFLW" / f"{i:04d}-image{i}.jpg", 64, 64, seed=100 + i)
    for name, rows in lines.items():
        text = "\r\n".join(row if k == 0 else " " + row for k, row in enumerate(rows)) + "\r\n "
        (root / name).write_bytes(text.encode())
    return root


def load(root: Path, *overrides: str) -> dict:
    config = load_config(None, ["data.name=mtfl", f"data.root={root}", "data.image_size=32", *overrides])
    return build_datasets(config.data)


def test_parser_spec_case():
    face = parse_line(SPEC_LINE)
    assert face.path == "lfw_5590/X.jpg"
    assert face.points[0].tolist() == [107.25, 108.75]  # left eye: x1, y1 (all x come first)
    assert face.points[1].tolist() == [147.75, 113.25] and face.points[2].tolist() == [126.25, 143.75]
    assert face.attributes == {"gender": 0, "smile": 0, "glasses": 0, "pose": 2}
    assert DEFAULT_ATTRIBUTES["smile"][face.attributes["smile"]] == "no"  # code 2 = not smiling
    smiling = parse_line(" " + SPEC_LINE.replace(" 1 2 2 3", " 2 1 1 5") + "\r")
    assert smiling.attributes == {"gender": 1, "smile": 1, "glasses": 1, "pose": 4}
    assert parse_line("  \r") is None


@pytest.mark.parametrize("text, message", [
    ("a.jpg 1 2 3", "expected 15 fields"),
    (SPEC_LINE.replace("107.25", "x"), "coordinates must be numbers"),
    (SPEC_LINE.replace(" 1 2 2 3", " 3 2 2 3"), "gender code '3'"),
    (SPEC_LINE.replace(" 1 2 2 3", " 1 2 2 6"), "pose code '6'"),
])
def test_parser_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_line(text)


def test_fake_release_splits_and_labels(tmp_path):
    splits = load(write_mtfl(tmp_path), "data.val_fraction=0.25")
    assert len(splits["test"]) == 3 and len(splits["train"]) + len(splits["val"]) == 8 and len(splits["val"]) >= 1
    test = splits["test"]
    assert test.labels["attr"][0].tolist() == [1, 1, 1, 4] and bool(test.mask["attr"].all())
    lmk = test.labels["lmk"]
    assert lmk.shape == (3, 5, 2) and float(lmk.min()) > 0.15 and float(lmk.max()) < 0.85  # crop margin around them
    assert test.images.shape == (3, 32, 32, 3)
    assert identity("lfw_5590/Person_0_0001.jpg") == "lfw:Person_0"  # validation never splits an LFW person
    assert identity("net_7876/_0_0.jpg") == "net_7876/_0_0.jpg"


def test_crop_to_image_recovers_the_released_pixels(tmp_path):
    test = load(write_mtfl(tmp_path))["test"]
    batch = test.__getitems__([0, 1, 2])
    back = crop_to_image(batch["labels"]["lmk"].numpy(), batch["info"]["crop"].numpy())
    expected = parse_line(mtfl_line("AFLW\\x.jpg", 1.0)).points
    assert np.allclose(back, expected[None], atol=1e-4)


def test_malformed_line_names_file_and_line(tmp_path):
    write_mtfl(tmp_path)
    text = (tmp_path / "training.txt").read_bytes().decode().split("\r\n")
    text[2] = " lfw_5590\\broken.jpg 1 2 3"
    (tmp_path / "training.txt").write_bytes("\r\n".join(text).encode())
    with pytest.raises(FacemtlError, match=r"training\.txt:3: expected 15 fields"):
        load(tmp_path)


def test_missing_image_names_file_and_line(tmp_path):
    write_mtfl(tmp_path)
    (tmp_path / "AFLW" / "0001-image1.jpg").unlink()
    with pytest.raises(FacemtlError, match=r"testing\.txt:2: image AFLW/0001-image1\.jpg not found"):
        load(tmp_path)


def test_data_check_lists_every_problem(tmp_path):
    write_mtfl(tmp_path)
    (tmp_path / "AFLW" / "0001-image1.jpg").unlink()
    with open(tmp_path / "testing.txt", "ab") as handle:
        handle.write(b"AFLW\\z.jpg 1 2\r\n")
    # Imported here, not at module level: run_check's default ``out=sys.stdout`` is bound at import,
    # and importing it during collection would bind pytest's stream before capsys (other tests rely on that).
    from facemtl.data.check import run_check

    report = io.StringIO()
    overrides = ["data.name=mtfl", f"data.root={tmp_path}", "data.image_size=32", "data.grey=true"]
    problems = run_check(None, overrides, out=report)
    out = report.getvalue()
    assert problems == 2 and "testing.txt:2: image" in out and "testing.txt:4: expected 15 fields" in out


@pytest.mark.filterwarnings("ignore:.*8 of 8 faces have no detected box")  # the CSV lists test images only
def test_detector_boxes_frame_the_faces_and_landmarks_still_map_back(tmp_path):
    write_mtfl(tmp_path)
    # A `facemtl predict` CSV: face 0 has its box plus a far-away second face, face 1 only a
    # box that misses its landmarks (-> landmark framing), face 2 a "success = 0" row (no face).
    rows = ["input,frame,success,face_x,face_y,face_w,face_h",
            f"{tmp_path / 'AFLW' / '0000-image0.jpg'},0,1,14,12,36,44",
            f"{tmp_path / 'AFLW' / '0000-image0.jpg'},0,1,50,50,10,10",
            "AFLW/0001-image1.jpg,0,1,0,0,5,5",
            "AFLW/0002-image2.jpg,0,0,,,,"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    plain = load(tmp_path)["test"]
    with pytest.warns(UserWarning, match=r"testing\.txt: 2 of 3 faces have no detected box"):
        boxed = load(tmp_path, f"data.mtfl.boxes={tmp_path / 'boxes.csv'}")["test"]
    crops = boxed.info["crop"].numpy()
    assert crops[0].tolist() == [32 - 22, 34 - 22, 44]  # the box's longer side, BOX_MARGIN = 0 around it
    assert np.array_equal(crops[1:], plain.info["crop"].numpy()[1:])  # no box: framed as without data.mtfl.boxes
    batch = boxed.__getitems__([0, 1, 2])
    back = crop_to_image(batch["labels"]["lmk"].numpy(), batch["info"]["crop"].numpy())
    assert np.allclose(back, parse_line(mtfl_line("AFLW\\x.jpg", 1.0)).points[None], atol=1e-4)


@pytest.mark.parametrize("text, message", [
    ("file,left,top\n", r"boxes\.csv:1: expected columns input,face_x"),
    ("path,x,y,w,h\nAFLW/0000-image0.jpg,1,2,three,4\n", r"boxes\.csv:2: face box .* must be numbers"),
])
def test_bad_box_file_names_file_and_line(tmp_path, text, message):
    write_mtfl(tmp_path)
    (tmp_path / "boxes.csv").write_text(text)
    with pytest.raises(FacemtlError, match=message):
        load(tmp_path, f"data.mtfl.boxes={tmp_path / 'boxes.csv'}")
    with pytest.raises(FacemtlError, match="data.mtfl.boxes=.*no such file"):
        load(tmp_path, f"data.mtfl.boxes={tmp_path / 'nope.csv'}")


def test_grey_batches_and_num_landmarks_check(tmp_path):
    splits = load(write_mtfl(tmp_path), "data.grey=true")
    image = splits["test"].__getitems__([0])["image"]
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])
    with pytest.raises(FacemtlError, match="MTFL labels 5 landmarks"):
        load(tmp_path, "data.num_landmarks=68")


@pytest.mark.skipif(not (REAL_MTFL / "training.txt").is_file(), reason="real MTFL data not available")
def test_real_mtfl_lines():
    lines = (REAL_MTFL / "training.txt").read_bytes().decode().splitlines()
    first, second = parse_line(lines[0]), parse_line(lines[1])
    assert first.path == "lfw_5590/Aaron_Eckhart_0001.jpg" and lines[1].startswith(" ")
    assert first.points[:2].tolist() == [[107.25, 108.75], [147.75, 113.25]]
    assert first.attributes == {"gender": 0, "smile": 0, "glasses": 0, "pose": 2}
    assert second.attributes["smile"] == 1  # "1 1 2 3": smiling
    test_lines = (REAL_MTFL / "testing.txt").read_text().splitlines()
    faces = [parse_line(t) for t in test_lines[:50]]
    assert all(f.path.startswith("AFLW/") and (REAL_MTFL / f.path).is_file() for f in faces)
    assert all(f.points[0, 0] < f.points[1, 0] for f in faces)  # image-left eye first


def test_cli_prints_the_missing_box_warning_as_one_line(tmp_path, capsys):
    from facemtl.cli import main

    write_mtfl(tmp_path)
    (tmp_path / "boxes.csv").write_text("path,x,y,w,h\nAFLW/0000-image0.jpg,14,12,36,44\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data:\n  name: mtfl\n  root: {tmp_path}\n  image_size: 32\n  mtfl: {{boxes: {tmp_path / 'boxes.csv'}}}\n")
    assert main(["data", "check", str(recipe), "--no-images"]) == 0
    err = capsys.readouterr().err
    assert "facemtl: warning: " in err and "testing.txt: 2 of 3 faces have no detected box" in err
    assert "UserWarning" not in err  # one line per warning, not Python's two-line format
