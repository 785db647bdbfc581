"""Video tracking with ``--detect-every K``: faces followed between detections keep their ids.

Uses the shipped model (its 5 landmarks do the following) and YuNet on synthetic videos made
from the shared photos: faces that slide, and a face that leaves the picture and returns.
"""

from pathlib import Path

import numpy as np
import pytest

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media not available")


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return path


@pytest.fixture(scope="module")
def sliding_faces(tmp_path_factory) -> Path:
    """8 frames of multi_face.jpg sliding right by 6 px a frame: 5 faces that move."""
    import cv2

    image = cv2.imread(str(MEDIA / "multi_face.jpg"))[:640, :960]
    return _write_video(tmp_path_factory.mktemp("video") / "sliding.mp4", [np.roll(image, 6 * t, axis=1) for t in range(8)])


@pytest.fixture(scope="module")
def face_leaves_and_returns(tmp_path_factory) -> Path:
    """single_face.jpg for frames 1-4, an empty grey picture for 5-10, the face again for 11-16."""
    import cv2

    image = cv2.resize(cv2.imread(str(MEDIA / "single_face.jpg")), (480, 360))
    empty = np.full_like(image, 127)
    frames = [image] * 4 + [empty] * 6 + [image] * 6
    return _write_video(tmp_path_factory.mktemp("video") / "leaves.mp4", frames)


def _analyzer(detect_every: int):
    from facemtl import FaceAnalyzer

    return FaceAnalyzer(detector="yunet", detect_every=detect_every)


def test_followed_faces_keep_their_ids_and_move_with_the_faces(sliding_faces):
    detected = _analyzer(1).predict(sliding_faces)
    followed = _analyzer(4).predict(sliding_faces)
    assert len(followed) == len(detected) == 40 and followed.success.all()
    assert sorted(followed.face_id.unique()) == sorted(detected.face_id.unique()) == [0, 1, 2, 3, 4]
    pairs = detected.merge(followed, on=["frame", "face_id"], suffixes=("", "_followed"))
    moved = (pairs.det_x_0 - pairs.det_x_0_followed).abs() > 1e-3
    assert not moved[pairs.frame.isin([1, 5])].any()  # detector frames: the detector's points
    assert moved[~pairs.frame.isin([1, 5])].all()  # between them: points from the model's landmarks
    for face_id, track in followed.groupby("face_id"):
        assert len(track) == 8 and track.frame.is_unique
        centre = track.face_x + track.face_w / 2
        steps = centre.diff().dropna()
        assert (steps > -6).all() and (steps < 24).all(), (face_id, steps)  # follows right, never jumps to another face
        travelled = centre.iloc[-1] - centre.iloc[0]
        assert 24 < travelled < 60, (face_id, travelled)  # 7 steps of 6 px; followed landmarks lag behind


def test_a_face_that_leaves_and_returns(face_leaves_and_returns):
    every_frame = _analyzer(1).predict(face_leaves_and_returns)
    assert every_frame.success.tolist() == [1] * 4 + [0] * 6 + [1] * 6
    assert every_frame[every_frame.success == 1].face_id.nunique() == 1  # back within the tracker's patience

    followed = _analyzer(3).predict(face_leaves_and_returns)  # detections on frames 1, 4, 7, 10, 13, 16
    success = followed.success.tolist()
    assert success[:4] == [1] * 4 and success[12:] == [1] * 4
    assert success[6:9] == [0] * 3  # from the first detection after it left until the next one
    assert sum(success[4:6]) <= 2  # followed at most K-1 frames past its last detection
    returned = followed[(followed.frame >= 13) & (followed.success == 1)]
    assert returned.face_id.nunique() == 1 and len(returned) == 4


def test_detect_every_is_checked():
    from facemtl.errors import FacemtlError

    with pytest.raises(FacemtlError, match="--detect-every must be >= 1"):
        _analyzer(0)
