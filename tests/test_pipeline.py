"""Pipeline pieces on their own: schema, alignment maths, tracking, detectors, input decoding."""

import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from facemtl.tasks.au import au_column
from facemtl.errors import FacemtlError
from facemtl.labels import TASKS, LabelSpaces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEDIA, YUNET = SHARED / "media", SHARED / "models" / "face_detection_yunet_2023mar.onnx"
needs_media = pytest.mark.skipif(not MEDIA.is_dir() or not YUNET.is_file(), reason="shared media not available")


def test_import_facemtl_stays_light_and_exports_face_analyzer():
    code = ("import sys, facemtl; assert 'cv2' not in sys.modules and 'pandas' not in sys.modules; "
            "import facemtl.pipeline.schema; assert 'cv2' not in sys.modules; "
            "print(facemtl.FaceAnalyzer.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "FaceAnalyzer"


def test_schema_has_columns_only_for_the_checkpoints_tasks():
    from facemtl.pipeline import schema

    spaces = LabelSpaces(au_names=("AU1", "AU12"))
    full = schema.columns(TASKS, spaces)
    assert full[:6] == ["input", "frame", "face_id", "timestamp", "confidence", "success"]
    assert {"lmk5_x_0", "lmk5_y_4", "AU01_c", "AU12_p", "expr_happiness", "expr_label", "valence", "arousal",
            "attr_gender", "attr_gender_female", "attr_pose_frontal", "error"} <= set(full)
    assert len(full) == len(set(full))
    partial = schema.columns(["expr", "va"], spaces)
    assert not any(c.startswith(("x_", "lmk5_", "AU", "attr_")) for c in partial) and "valence" in partial
    assert au_column("AU1") == "AU01" and au_column("AU45") == "AU45"


def test_similarity_transform_recovers_a_known_transform_and_inverts():
    from facemtl.geometry import apply, invert, similarity_transform

    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (5, 2))
    angle, scale, shift = 0.3, 0.17, np.array([12.0, -40.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(apply(matrix, src), dst, atol=1e-9)
    assert np.allclose(apply(invert(matrix), dst), src, atol=1e-6)


def test_whole_image_box_maps_a_crop_of_model_size_onto_itself():
    from facemtl.geometry import box_transform, warp_face

    # --no-detect on a 48 px crop for a 48 px model: no half-pixel shift (it would blur every face)
    assert np.allclose(box_transform((0.0, 0.0, 48.0, 48.0), 48, margin=0.0), [[1, 0, 0], [0, 1, 0]])
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    assert np.array_equal(warp_face(image, box_transform((0.0, 0.0, 48.0, 48.0), 48, margin=0.0), 48), image)


def test_unmirror_reflects_and_relabels_landmarks_and_reverses_pose_only():
    from facemtl.pipeline.backends import unmirror

    rng = np.random.default_rng(0)
    spaces = LabelSpaces()
    outputs = {"expr": rng.dirichlet(np.ones(7), 3), "va": rng.uniform(-1, 1, (3, 2)),
               "lmk": rng.uniform(0, 1, (3, 5, 2)), "attr": {n: rng.dirichlet(np.ones(len(c)), 3)
                                                             for n, c in spaces.attributes.items()}}
    back = unmirror(outputs, spaces)
    # the left eye of the face is the (reflected) right eye of its mirror image
    assert np.allclose(back["lmk"][:, 0], np.stack([1 - outputs["lmk"][:, 1, 0], outputs["lmk"][:, 1, 1]], 1))
    assert np.allclose(back["lmk"][:, 2, 0], 1 - outputs["lmk"][:, 2, 0])  # the nose stays the nose
    assert np.array_equal(back["attr"]["pose"], outputs["attr"]["pose"][:, ::-1])
    for name in ("gender", "smile", "glasses"):
        assert back["attr"][name] is outputs["attr"][name]
    assert back["expr"] is outputs["expr"] and back["va"] is outputs["va"]
    twice = unmirror(back, spaces)  # a flip undone twice is the identity
    assert np.allclose(twice["lmk"], outputs["lmk"]) and np.array_equal(twice["attr"]["pose"], outputs["attr"]["pose"])


def test_unknown_test_time_augmentation_is_refused():
    from facemtl import FaceAnalyzer

    with pytest.raises(FacemtlError, match="test-time augmentation 'ten_crop'.*none, flip"):
        FaceAnalyzer("missing.safetensors", tta="ten_crop")


@pytest.mark.parametrize("scale", [2.0, 0.45, 0.13, 0.05])  # up, down, and area-reduced down by 2, 4, 10
def test_warp_face_puts_a_source_point_where_the_transform_says(scale):
    from facemtl.geometry import apply, warp_face

    image = np.zeros((1999, 2003, 3), np.uint8)
    image[1190:1211, 790:811] = 255  # a bright square centred on (800, 1200)
    centre = np.array([800.0, 1200.0])
    matrix = np.array([[scale, 0, 0], [0, scale, 0]], float)
    matrix[:, 2] = 32 - apply(matrix, centre)  # the square's centre lands on crop pixel (32, 32)
    crop = warp_face(image, matrix, 64).astype(float)[:, :, 0]
    ys, xs = np.nonzero(crop > 0)
    weights = crop[ys, xs]
    assert abs((xs * weights).sum() / weights.sum() - 32) < 0.6
    assert abs((ys * weights).sum() / weights.sum() - 32) < 0.6


def test_iou_tracker_keeps_ids_across_moves_order_changes_and_gaps():
    from facemtl.pipeline.video import IoUTracker

    tracker = IoUTracker(max_age=2)
    a, b = (100, 100, 50, 50), (300, 100, 50, 50)
    assert tracker.update([b, a]) == [1, 0]  # new faces numbered left to right
    assert tracker.update([(105, 102, 50, 50), (296, 99, 50, 50)]) == [0, 1]
    assert tracker.update([]) == []
    assert tracker.update([(298, 100, 50, 50)]) == [1]  # survives a missed frame
    assert tracker.update([(500, 500, 40, 40), (300, 101, 50, 50)]) == [2, 1]
    for _ in range(3):
        tracker.update([])
    assert tracker.update([(300, 100, 50, 50)]) == [3]  # gone too long: a new id


def test_to_rgb_uint8_handles_grey_rgba_16bit_float_and_rejects_nonsense():
    from facemtl.pipeline.sources import to_rgb_uint8

    grey = to_rgb_uint8(np.full((4, 5), 7, np.uint8))
    assert grey.shape == (4, 5, 3) and grey.dtype == np.uint8 and (grey == 7).all()
    assert to_rgb_uint8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert (to_rgb_uint8(np.full((4, 5, 3), 65535, np.uint16)) == 255).all()
    assert (to_rgb_uint8(np.full((4, 5, 3), 0.5, np.float32)) == 128).all()
    with pytest.raises(FacemtlError, match="shape"):
        to_rgb_uint8(np.zeros((4, 5, 2), np.uint8))


def test_read_image_reads_grey_16bit_rgba_and_reports_corrupt_files(tmp_path):
    import cv2

    from facemtl.pipeline.sources import read_image

    cv2.imwrite(str(tmp_path / "grey.png"), np.full((20, 30), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((20, 30, 3), 40000, np.uint16))
    cv2.imwrite(str(tmp_path / "alpha.png"), np.full((20, 30, 4), 200, np.uint8))
    for name in ("grey.png", "deep.png", "alpha.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert read_image(tmp_path / "deep.png").max() == 40000 >> 8
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("bad.jpg", "empty.png", "missing.png"):
        with pytest.raises(FacemtlError):
            read_image(tmp_path / name)


def test_expand_sources_walks_folders_and_flags_bad_inputs(tmp_path):
    from facemtl.pipeline.sources import expand_sources

    (tmp_path / "sub").mkdir()
    (tmp_path / "empty").mkdir()
    for name in ("b.jpg", "sub/a.PNG", "clip.mp4", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    sources, notes = expand_sources(tmp_path)
    assert [(Path(s.name).name, s.kind) for s in sources] == [("b.jpg", "image"), ("clip.mp4", "video"), ("a.PNG", "image")]
    sources, notes = expand_sources([tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "nope.jpg", 42])
    assert [s.kind for s in sources] == ["bad", "bad", "bad"] and "no image or video" in notes[0]
    assert "unsupported file type '.txt'" in sources[0].error and "no such file" in sources[1].error


def test_expand_sources_finds_files_under_a_relative_path_through_dot_dot(tmp_path, monkeypatch):
    from facemtl.pipeline.sources import expand_sources

    (tmp_path / "photos" / ".cache").mkdir(parents=True)
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    (tmp_path / "photos" / ".cache" / "b.jpg").write_bytes(b"x")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    sources, notes = expand_sources("../photos")  # ".." is not a hidden folder; ".cache" inside it is
    assert [Path(s.name).name for s in sources] == ["a.jpg"] and not notes


def test_haar_detector_finds_a_face_and_estimates_points_inside_the_box():
    pytest.importorskip("cv2")
    if not MEDIA.is_dir():
        pytest.skip("shared media not available")
    from facemtl.pipeline.detect import HaarDetector
    from facemtl.pipeline.sources import read_image

    faces = HaarDetector().detect(read_image(MEDIA / "single_face.jpg"))
    assert len(faces) == 1
    x, _, w, _ = faces[0].box
    points = faces[0].points
    assert points.shape == (5, 2) and (points[:, 0] > x).all() and (points[:, 0] < x + w).all()
    assert points[0, 0] < points[1, 0] and points[2, 1] < points[3, 1]  # eyes left to right, mouth below nose


@needs_media
def test_yunet_points_are_ordered_and_in_original_pixels_for_a_huge_photo():
    import cv2

    from facemtl.pipeline.detect import YuNetDetector
    from facemtl.pipeline.sources import read_image

    image = read_image(MEDIA / "single_face.jpg")
    detector = YuNetDetector(YUNET)
    small = detector.detect(image)
    big = detector.detect(cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR))
    assert len(small) == len(big) == 1
    # same points up to detector noise (it sees 562 px vs 640 px versions): within 5 % of the face width
    assert np.allclose(big[0].points / 4, small[0].points, atol=0.05 * small[0].box[2])
    assert small[0].points[0, 0] < small[0].points[1, 0]  # image-left eye first, as LANDMARKS_5


def test_yunet_model_lookup_env_cache_download_and_hash_check(tmp_path, monkeypatch):
    from facemtl.pipeline import detect

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEMTL_YUNET", raising=False)
    monkeypatch.setenv("FACEMTL_YUNET", str(tmp_path / "missing.onnx"))
    with pytest.raises(FacemtlError, match="does not exist"):
        detect.yunet_model_path()
    monkeypatch.delenv("FACEMTL_YUNET")
    packaged = detect.yunet_model_path()  # the copy shipped in facemtl/weights wins over cache and download
    assert packaged.parent.name == "weights" and detect._sha256(packaged) == detect.YUNET_SHA256
    monkeypatch.setattr(detect, "_packaged_yunet", lambda: None)  # an install without it: cache, then download

    class Response:
        def __init__(self, data):
            self.data = data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.data

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"tampered"))
    with pytest.raises(FacemtlError, match="SHA-256"):
        detect.yunet_model_path()
    assert not list((tmp_path / "cache" / "facemtl").iterdir())  # nothing half-written is kept

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FacemtlError, match="--detector haar"):
        detect.yunet_model_path()
    with pytest.warns(UserWarning, match="Haar"):
        assert isinstance(detect.create_detector("auto"), detect.HaarDetector)
    if YUNET.is_file():  # a good download lands in the cache and is found there next time
        monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(YUNET.read_bytes()))
        path = detect.yunet_model_path()
        assert path == tmp_path / "cache" / "facemtl" / detect.YUNET_FILE and path.is_file()
        monkeypatch.setattr(urllib.request, "urlopen", offline)
        assert detect.yunet_model_path() == path
    with pytest.raises(FacemtlError, match="unknown detector"):
        detect.create_detector("dlib")
