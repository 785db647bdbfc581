"""End to end: FaceAnalyzer and `facemtl predict` on real photos and videos, and on bad input.

The model is a tiny random network whose landmark head outputs the alignment template
exactly, so mapped-back landmarks can be checked against the detector's points; nothing
here checks accuracy (a model trained on synthetic faces predicts nonsense on photos).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from facemtl.cli import main
from facemtl.errors import FacemtlError
from facemtl.labels import TASKS, LabelSpaces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEDIA, YUNET = SHARED / "media", SHARED / "models" / "face_detection_yunet_2023mar.onnx"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir() or not YUNET.is_file(), reason="shared media not available")

TEMPLATE = [[0.41, 0.44], [0.59, 0.44], [0.5, 0.55], [0.43, 0.65], [0.57, 0.65]]
SIZE = 32


def make_checkpoint(path: Path, tasks=TASKS, template=TEMPLATE) -> Path:
    """A test_tiny MultiTaskNet saved the way the trainer saves it ("net." keys)."""
    from facemtl.config import load_config
    from facemtl.io.checkpoint import save_checkpoint
    from facemtl.tasks.network import build_network

    torch.manual_seed(0)
    spaces = LabelSpaces(au_names=("AU1", "AU2", "AU12"))
    net = build_network("test_tiny", tasks, spaces).eval()
    if "lmk" in tasks and template is not None:
        with torch.no_grad():  # the landmark head ignores the image and outputs the template
            net.heads["lmk"].linear.weight.zero_()
            net.heads["lmk"].linear.bias.copy_(torch.tensor(template).flatten() - 0.5)
    config = load_config(None, ["model.backbone=test_tiny", f"data.image_size={SIZE}", f"model.tasks={','.join(tasks)}"])
    preprocess = {"image_size": SIZE, "template_5pt": template} if template else {"image_size": SIZE}
    return save_checkpoint(path, {f"net.{k}": v for k, v in net.state_dict().items()}, config_yaml=config.to_yaml(),
                           label_spaces=spaces, tasks=list(tasks), preprocess=preprocess)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def analyzer(checkpoint):
    from facemtl import FaceAnalyzer

    return FaceAnalyzer(checkpoint, detector="yunet", batch_size=4, detector_options={"model": YUNET})


@pytest.fixture(scope="session")
def multi_face_video(tmp_path_factory) -> Path:
    """8 frames of multi_face.jpg sliding right by 6 px a frame: 5 faces that move."""
    import cv2

    image = cv2.imread(str(MEDIA / "multi_face.jpg"))[:640, :960]
    path = tmp_path_factory.mktemp("video") / "five_faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (960, 640))
    for t in range(8):
        writer.write(np.ascontiguousarray(np.roll(image, 6 * t, axis=1)))
    writer.release()
    return path


def _faces(df):
    return df[df.success == 1]


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("name, count", [("no-faces.jpg", 0), ("single_face.jpg", 1), ("multi_face.jpg", 5)])
def test_images_with_zero_one_and_many_faces(analyzer, name, count, batch_size):
    analyzer.batch_size = batch_size
    df = analyzer.predict(MEDIA / name)
    assert list(df.columns) == analyzer.columns and df.attrs["schema_version"] == "2"
    assert len(_faces(df)) == count and len(df) == max(count, 1)
    if count == 0:
        assert df.success.tolist() == [0] and df.face_id.tolist() == [-1] and df.error.tolist() == [""]
        return
    assert sorted(df.face_id) == list(range(count)) and (df.face_x.diff().dropna() > 0).all()  # left to right
    assert np.allclose(df.filter(like="expr_").drop(columns="expr_label").sum(axis=1), 1, atol=1e-4)
    assert set(df.expr_label) <= set(LabelSpaces().expr_classes) and df.valence.between(-1, 1).all()
    assert set(df.AU12_c) <= {0, 1} and df.attr_pose.notna().all()


def test_batch_size_does_not_change_predictions(analyzer):
    analyzer.batch_size = 1
    one = analyzer.predict([MEDIA / "multi_face.jpg", MEDIA / "two_people.jpg"])
    analyzer.batch_size = 4
    many = analyzer.predict([MEDIA / "multi_face.jpg", MEDIA / "two_people.jpg"])
    assert len(one) == 7
    numeric = one.select_dtypes("number").columns
    assert np.allclose(one[numeric], many[numeric], atol=1e-4)


def test_landmarks_map_back_onto_the_detected_points(tmp_path, analyzer):
    from facemtl import FaceAnalyzer
    from facemtl.pipeline.sources import read_image

    # generic template: points land near the detector's, up to the non-similar part of each face
    df = analyzer.predict(MEDIA / "multi_face.jpg")
    for _, row in df.iterrows():
        error = np.hypot(*(row[[f"lmk5_x_{i}" for i in range(5)]].to_numpy(float) - row[[f"det_x_{i}" for i in range(5)]].to_numpy(float),
                           row[[f"lmk5_y_{i}" for i in range(5)]].to_numpy(float) - row[[f"det_y_{i}" for i in range(5)]].to_numpy(float)))
        assert error.max() < 0.2 * (row.det_x_1 - row.det_x_0)
    # a template that is a similarity image of this face's points: exact to a pixel
    points = analyzer._get_detector().detect(read_image(MEDIA / "single_face.jpg"))[0].points.astype(float)
    template = 0.5 + (points - points.mean(0)) / (4 * np.hypot(*(points[1] - points[0])))
    exact = FaceAnalyzer(make_checkpoint(tmp_path / "exact.safetensors", template=template.tolist()),
                         detector="yunet", detector_options={"model": YUNET})
    row = exact.predict(MEDIA / "single_face.jpg").iloc[0]
    for i in range(5):
        assert abs(row[f"lmk5_x_{i}"] - row[f"det_x_{i}"]) < 1 and abs(row[f"lmk5_y_{i}"] - row[f"det_y_{i}"]) < 1


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("video, every, frames, faces", [
    ("no_face.mp4", 7, 14, 0), ("single_face.mp4", 2, 36, 1), (None, 1, 8, 5),
])
def test_videos_with_zero_one_and_many_faces(analyzer, multi_face_video, video, every, frames, faces, batch_size):
    analyzer.batch_size = batch_size
    path = MEDIA / video if video else multi_face_video
    df = analyzer.predict(path, every=every)
    assert df.frame.nunique() == frames and sorted(df.frame.unique()) == list(range(1, every * frames + 1, every))
    assert (df.timestamp.diff().dropna() >= 0).all() and df.timestamp.iloc[0] == 0
    assert len(_faces(df)) == frames * faces
    if faces == 0:
        assert (df.success == 0).all()
        return
    assert sorted(_faces(df).face_id.unique()) == list(range(faces))  # ids stable over the whole video
    if faces > 1:  # each id follows its own face: boxes move right by 6 px a frame, never jump
        for _, track in df.groupby("face_id"):
            assert len(track) == frames and np.allclose(track.face_x.diff().dropna(), 6, atol=4)


def test_opencv_decoding_matches_pyav(analyzer, monkeypatch):
    from facemtl.pipeline import video

    first = analyzer.predict(MEDIA / "WolfgangLanger_Pexels.mp4", every=59)
    monkeypatch.setattr(video, "_has_pyav", lambda: False)  # as on an install without the video extra
    second = analyzer.predict(MEDIA / "WolfgangLanger_Pexels.mp4", every=59)
    assert first.frame.tolist() == second.frame.tolist() == list(range(1, 473, 59)) and second.success.all()
    assert np.allclose(first.timestamp, second.timestamp, atol=1e-3) and abs(first.timestamp.iloc[1] - 59 / 23.976) < 1e-3
    assert np.allclose(first.face_x, second.face_x, atol=1.0)


def test_face_then_no_face_video_keeps_one_row_per_frame(analyzer):
    df = analyzer.predict(MEDIA / "face_noface.mov", every=8)
    assert df.frame.is_unique and len(df) == -(-169 // 8)
    assert df.success.iloc[0] == 1 and df.success.iloc[-1] == 0 and set(_faces(df).face_id) == {0}


def test_bad_inputs_give_success_zero_rows_and_processing_continues(analyzer, tmp_path):
    import cv2

    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    cv2.VideoWriter(str(tmp_path / "zero_frames.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64)).release()
    face = cv2.imread(str(MEDIA / "single_face.jpg"))
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "deep.png"), face.astype(np.uint16) * 257)
    huge = np.zeros((3000, 6000, 3), np.uint8)
    huge[:, 1500:4500] = cv2.resize(face, (3000, 3000))
    cv2.imwrite(str(tmp_path / "huge.jpg"), huge)
    inputs = [tmp_path / n for n in ("corrupt.jpg", "empty.mp4", "notes.txt", "zero_frames.mp4", "missing.png",
                                     "grey.png", "deep.png", "huge.jpg")] + [MEDIA / "32bit.png"]
    out = tmp_path / "rows.csv"
    with pytest.warns(UserWarning) as caught:
        analyzer.predict(inputs, out=out)
    import pandas as pd

    df = pd.read_csv(out)
    by_input = {Path(name).name: group for name, group in df.groupby("input")}
    assert len(by_input) == len(inputs)
    for bad in ("corrupt.jpg", "empty.mp4", "notes.txt", "zero_frames.mp4", "missing.png"):
        assert by_input[bad].success.tolist() == [0] and len(by_input[bad].error.iloc[0]) > 5
        assert any(bad in str(w.message) for w in caught)
    for good in ("grey.png", "deep.png", "huge.jpg", "32bit.png"):
        assert by_input[good].success.tolist() == [1], good
    big = by_input["huge.jpg"].iloc[0]
    assert big.face_w > 700 and 1500 < big.det_x_0 < big.det_x_1 < 4500  # original 6000-px coordinates


def test_rows_already_written_survive_a_crash(checkpoint, tmp_path, monkeypatch):
    from facemtl import FaceAnalyzer

    analyzer = FaceAnalyzer(checkpoint, detector="yunet", batch_size=1, detector_options={"model": YUNET})
    real, calls = analyzer._run_model, []

    def flaky(faces):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        real(faces)

    monkeypatch.setattr(analyzer, "_run_model", flaky)
    out = tmp_path / "partial.csv"
    with pytest.raises(RuntimeError, match="simulated"):
        analyzer.predict(MEDIA / "single_face.mp4", out=out)
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 2 and lines[1].split(",")[1] == "1"  # header + the two finished frames


def test_arrays_pil_images_and_box_crop_fallback(analyzer, tmp_path):
    import cv2
    from PIL import Image

    from facemtl import FaceAnalyzer

    rgb = cv2.cvtColor(cv2.imread(str(MEDIA / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    from_path = analyzer.predict(MEDIA / "single_face.jpg")
    from_arrays = analyzer.predict([rgb, Image.fromarray(rgb), rgb.mean(axis=2).astype(np.uint8)])
    assert from_arrays.input.tolist() == ["<array 0>", "<array 1>", "<array 2>"] and from_arrays.success.all()
    assert np.allclose(from_arrays.iloc[0].expr_happiness, from_path.iloc[0].expr_happiness, atol=1e-6)
    # no template (and a checkpoint without every task): box crop with margin, fewer columns
    plain = FaceAnalyzer(make_checkpoint(tmp_path / "plain.safetensors", tasks=("expr", "va"), template=None),
                         detector="yunet", detector_options={"model": YUNET})
    df = plain.predict(rgb)
    assert len(df) == 1 and "lmk5_x_0" not in df and "AU01_c" not in df and "valence" in df and df.success.all()
    with pytest.raises(FacemtlError, match="nothing to analyse"):
        analyzer.predict(_empty_dir(tmp_path))
    degenerate = analyzer.predict([np.zeros((1, 1, 3), np.uint8), np.zeros((2, 5000), np.uint16)])
    assert degenerate.success.tolist() == [0, 0]  # too small to hold a face; no crash


def _empty_dir(tmp_path):
    path = tmp_path / "empty"
    path.mkdir(exist_ok=True)
    return path


def test_cli_predict_writes_csv_annotations_and_reports_errors(checkpoint, tmp_path, monkeypatch, capsys):
    import pandas as pd

    monkeypatch.setenv("FACEMTL_YUNET", str(YUNET))
    monkeypatch.delenv("FACEMTL_CHECKPOINT", raising=False)
    import facemtl.weights

    monkeypatch.setattr(facemtl.weights, "BASE_MODEL", tmp_path / "missing.safetensors")  # an install without it
    facemtl.weights.base_model.cache_clear()
    assert main(["predict", str(MEDIA / "multi_face.jpg")]) == 2
    facemtl.weights.base_model.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FACEMTL_CHECKPOINT" in err and "--checkpoint" in err

    out, pictures = tmp_path / "faces.csv", tmp_path / "annotated"
    args = ["predict", str(MEDIA / "multi_face.jpg"), str(MEDIA / "single_face.mp4"), "--checkpoint", str(checkpoint),
            "--out", str(out), "--annotate", str(pictures), "--every", "12", "--batch-size", "3"]
    assert main(args) == 0
    df = pd.read_csv(out)
    assert len(df) == 5 + 6 and df.success.all()
    assert sorted(p.name for p in pictures.iterdir()) == ["multi_face.jpg", "single_face.mp4"]
    assert (pictures / "single_face.mp4").stat().st_size > 1000

    monkeypatch.setenv("FACEMTL_CHECKPOINT", str(checkpoint))
    assert main(["predict", str(MEDIA / "single_face.jpg"), "--no-detect"]) == 0
    lines = capsys.readouterr().out.splitlines()  # CSV on standard output
    header, row = lines[0].split(","), dict(zip(lines[0].split(","), lines[1].split(",")))
    assert len(lines) == 2 and row["face_w"] == "572" and row["det_x_0"] == "" and "expr_label" in header
    assert main(["predict", str(_empty_dir(tmp_path))]) == 2
    assert "nothing to analyse" in capsys.readouterr().err
    assert main(["predict", str(MEDIA / "single_face.jpg"), "--every", "0"]) == 2
