"""The model shipped inside the package: hash, loading with no argument, and real-photo predictions.

Expected outputs live in ``tests/data/shipped_model_expected.json``; after retraining the
shipped model, regenerate them with ``python tests/test_shipped_model.py`` and check the
diff by eye (they are the model's outputs, not ground truth).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from facemtl.errors import FacemtlError
from facemtl.weights import BASE_MODEL, BASE_SHA256, base_model, sha256

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEDIA = SHARED / "media"
EXPECTED = Path(__file__).with_name("data") / "shipped_model_expected.json"
FER_FACE = SHARED / "fer2013" / "train" / "happy" / "Training_62256585.jpg"
PHOTOS = ("obama.jpg", "biden.jpg", "two_people.jpg", "multi_face.jpg")
needs_media = pytest.mark.skipif(not (MEDIA / "obama.jpg").is_file(), reason="shared media not available")


def predict_rows(photos=PHOTOS):
    from facemtl import FaceAnalyzer

    rows = FaceAnalyzer(detector="yunet").predict([str(MEDIA / name) for name in photos])
    rows["input"] = [Path(p).name for p in rows["input"]]
    return rows.sort_values(["input", "face_x"]).reset_index(drop=True)


def test_hash_and_size():
    assert BASE_MODEL.stat().st_size <= 25 * 1024 * 1024
    assert sha256(BASE_MODEL) == BASE_SHA256
    assert base_model() == BASE_MODEL


def test_tampered_file_is_refused(tmp_path, monkeypatch):
    from facemtl import weights

    fake = tmp_path / "facemtl_base.safetensors"
    fake.write_bytes(BASE_MODEL.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(weights, "BASE_MODEL", fake)
    weights.base_model.cache_clear()
    try:
        with pytest.raises(FacemtlError, match="SHA-256"):
            weights.base_model()
    finally:
        weights.base_model.cache_clear()


@needs_media
def test_obama_one_face_sensible_landmarks_and_attributes():
    rows = predict_rows(("obama.jpg",))
    assert len(rows) == 1 and rows.loc[0, "success"] == 1
    row = rows.loc[0]
    points = np.stack([[row[f"lmk5_x_{i}"] for i in range(5)], [row[f"lmk5_y_{i}"] for i in range(5)]], 1)
    detected = np.stack([[row[f"det_x_{i}"] for i in range(5)], [row[f"det_y_{i}"] for i in range(5)]], 1)
    eye_distance = np.linalg.norm(detected[1] - detected[0])
    # the model's points agree with YuNet's to within a fifth of the eye distance, point by point
    assert (np.linalg.norm(points - detected, axis=1) < 0.2 * eye_distance).all()
    assert points[0, 0] < points[1, 0] and points[:2, 1].max() < points[2, 1] < points[3:, 1].min()
    assert row["attr_gender"] == "male" and row["attr_glasses"] == "no"


@needs_media
def test_predictions_match_stored_outputs():
    expected = json.loads(EXPECTED.read_text())
    rows = predict_rows()
    assert list(rows["input"]) == [r["input"] for r in expected]
    for row, want in zip(rows.to_dict("records"), expected):
        for column, value in want.items():
            if isinstance(value, str):
                assert row[column] == value, (row["input"], column)
            else:  # float32 on another CPU: small drift only
                assert row[column] == pytest.approx(value, abs=0.5 if column.startswith(("lmk5_x_", "lmk5_y_")) else 0.01), (row["input"], column)


@needs_media
def test_cli_predict_without_checkpoint(tmp_path):
    from facemtl.cli import main

    out = tmp_path / "obama.csv"
    assert main(["predict", str(MEDIA / "obama.jpg"), "--out", str(out)]) in (0, None)
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == 1 and {"expr_label", "lmk5_x_0", "attr_smile"} <= set(frame.columns)


@pytest.mark.skipif(not FER_FACE.is_file(), reason="shared FER2013 not available")
def test_flip_tta_gives_mirrored_predictions_for_a_mirrored_face():
    import cv2

    from facemtl import FaceAnalyzer

    face = np.ascontiguousarray(cv2.imread(str(FER_FACE))[:, :, ::-1])  # a 48 px crop: the model's input size
    mirrored = np.ascontiguousarray(face[:, ::-1])
    gaps = {}
    for tta in ("none", "flip"):
        rows = FaceAnalyzer(detector="none", tta=tta).predict([face, mirrored])
        expr = rows[[f"expr_{c}" for c in ("neutral", "happiness", "sadness")]].to_numpy()
        xs = rows[[f"lmk5_x_{i}" for i in range(5)]].to_numpy()
        mirrored_x = 47.0 - xs[1][[1, 0, 2, 4, 3]]  # pixel x -> 47 - x, left <-> right
        pose = rows[[f"attr_pose_{c}" for c in ("left_profile", "left", "frontal", "right", "right_profile")]]
        gaps[tta] = (np.abs(expr[0] - expr[1]).max(), np.abs(xs[0] - mirrored_x).max(),
                     np.abs(pose.to_numpy()[0] - pose.to_numpy()[1][::-1]).max())
    assert max(gaps["flip"]) < 1e-4  # averaging both views makes the model exactly mirror-consistent
    assert gaps["none"][0] > 1e-4 and gaps["none"][1] > 0.05  # which the plain model is not


def write_expected() -> None:
    """Regenerate the stored outputs from the current shipped model."""
    rows = predict_rows()
    keep = ["input", "expr_label", "attr_gender", "attr_smile", "attr_glasses", "attr_pose"]
    keep += [c for c in rows.columns if c.startswith(("lmk5_x_", "lmk5_y_", "expr_")) and c != "expr_label"]
    records = [{k: (round(float(v), 4) if not isinstance(v, str) else v) for k, v in r.items()}
               for r in rows[keep].to_dict("records")]
    EXPECTED.parent.mkdir(exist_ok=True)
    EXPECTED.write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} faces to {EXPECTED}")


if __name__ == "__main__":
    write_expected()
