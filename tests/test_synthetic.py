"""Tests of the procedural face generator (tiny sizes: the whole file runs in seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from facemtl.data import _draw, _geometry
from facemtl.data import synthetic as syn
from facemtl.data.synthetic import SYNTHETIC_AU_IDS, generate_faces
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES, EXPR_CLASSES_8

HAPPY, SAD, SURPRISE, FEAR = (EXPR_CLASSES_8.index(c) for c in ("happiness", "sadness", "surprise", "fear"))
CONTEMPT = EXPR_CLASSES_8.index("contempt")


def au_col(au_id: int) -> int:
    return SYNTHETIC_AU_IDS.index(au_id)


@pytest.fixture(scope="module")
def many():
    """Clean faces (no pose or nuisance) for label statistics and pixel checks."""
    return generate_faces(700, 48, seed=11, difficulty=0.0)


def luminance(img: np.ndarray) -> np.ndarray:
    return img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255


def pixel_at(faces, points: np.ndarray) -> np.ndarray:
    """RGB of each face at normalised points ``[N, 2]`` -> ``[N, 3]`` uint8."""
    size = faces.images.shape[1]
    ij = np.clip((points * size).astype(int), 0, size - 1)
    return faces.images[np.arange(len(points)), ij[:, 1], ij[:, 0]]


def test_shapes_dtypes_and_ranges():
    f = generate_faces(24, 40, seed=1)
    n, a = 24, len(SYNTHETIC_AU_IDS)
    assert len(f) == n
    expected = {"images": ((n, 40, 40, 3), np.uint8), "expr": ((n,), np.int64), "au": ((n, a), np.float32),
                "au_intensity": ((n, a), np.float32), "va": ((n, 2), np.float32), "intensity": ((n,), np.float32),
                "lmk5": ((n, 5, 2), np.float32), "lmk68": ((n, 68, 2), np.float32), "attr": ((n, 4), np.int64)}
    for name, (shape, dtype) in expected.items():
        value = getattr(f, name)
        assert value.shape == shape and value.dtype == dtype, name
    assert set(np.unique(f.au)) <= {0.0, 1.0}
    assert ((f.au_intensity > 0) == (f.au > 0)).all()
    assert (f.au_intensity[f.au > 0] >= syn.AU_THRESHOLD).all() and f.au_intensity.max() <= 1
    assert np.abs(f.va).max() <= 1 and f.expr.min() >= 0 and f.expr.max() <= 6
    assert ((f.intensity == 0) == (f.expr == 0)).all() and f.intensity.max() <= 1
    for j, classes in enumerate(DEFAULT_ATTRIBUTES.values()):
        assert 0 <= f.attr[:, j].min() and f.attr[:, j].max() < len(classes)
    assert f.images.std() > 10  # something was drawn


def test_deterministic_chunk_independent_and_prefix_stable():
    a = generate_faces(13, 36, seed=5, chunk_size=4)
    b = generate_faces(13, 36, seed=5, chunk_size=256)
    c = generate_faces(5, 36, seed=5)
    for name in a.__dataclass_fields__:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert np.array_equal(getattr(a, name)[:5], getattr(c, name)), name


def test_different_seeds_differ():
    a, b = generate_faces(8, 32, seed=0), generate_faces(8, 32, seed=1)
    assert not np.array_equal(a.images, b.images)
    assert not np.array_equal(a.lmk68, b.lmk68)


def test_size_extremes_scale_geometry():
    small, large = generate_faces(3, 32, seed=2), generate_faces(3, 224, seed=2)
    assert small.images.shape[1:] == (32, 32, 3) and large.images.shape[1:] == (224, 224, 3)
    # same faces at two resolutions: normalised landmarks agree
    np.testing.assert_allclose(small.lmk68, large.lmk68, atol=1e-5)


def test_au_prototypes_present_statistically(many):
    au, expr = many.au, many.expr

    def rate(cls: int, au_id: int) -> float:
        return au[expr == cls, au_col(au_id)].mean()

    assert rate(HAPPY, 12) > 0.6 and rate(HAPPY, 12) > 4 * rate(SAD, 12)
    assert rate(SAD, 15) > 0.4 and rate(SAD, 15) > 3 * rate(HAPPY, 15)
    assert rate(SURPRISE, 26) > 0.5 and rate(FEAR, 20) > 0.4
    # partial activation: prototypes are not exact
    assert 0.05 < 1 - rate(HAPPY, 12) and au[expr == HAPPY].sum(1).std() > 0.3
    assert au[expr == 0].mean() < 0.05


def test_smile_follows_au12(many):
    assert np.array_equal(many.attr[:, 1], many.au[:, au_col(12)].astype(np.int64))


def test_valence_arousal_quadrants(many):
    va, expr = many.va, many.expr
    assert va[expr == HAPPY, 0].mean() > 0.2 > -0.2 > va[expr == SAD, 0].mean()
    assert va[expr == SURPRISE, 1].mean() > va[expr == SAD, 1].mean() + 0.4
    # informative but not a lookup of the class: spread within a class
    assert va[expr == HAPPY, 0].std() > 0.1


def test_class_probs_respected():
    f = generate_faces(400, 32, seed=3, class_probs=[0.7, 0.3, 0, 0, 0, 0, 0])
    assert set(np.unique(f.expr)) == {0, 1}
    assert 0.6 < (f.expr == 0).mean() < 0.8
    uniform = generate_faces(350, 32, seed=3)
    assert np.bincount(uniform.expr, minlength=7).min() > 25


def test_contempt_is_one_sided():
    f = generate_faces(400, 32, seed=4, num_expr_classes=8, difficulty=0.0)
    assert f.expr.max() == CONTEMPT and (f.expr == CONTEMPT).sum() > 20
    seven = generate_faces(400, 32, seed=4, num_expr_classes=7)
    assert seven.expr.max() < CONTEMPT
    contempt, happy = f.expr == CONTEMPT, f.expr == HAPPY
    assert f.au[contempt, au_col(12)].mean() > 0.6 and f.au[contempt, au_col(14)].mean() > 0.6
    # one corner pulled up, the other not: corner heights differ, unlike a smile
    tilt = np.abs(f.lmk68[:, 48, 1] - f.lmk68[:, 54, 1])
    assert np.median(tilt[contempt & (f.au[:, au_col(12)] > 0)]) > 3 * np.median(tilt[happy]) + 0.005


def test_landmarks_inside_image_and_ordered():
    f = generate_faces(200, 48, seed=6)
    inside = ((f.lmk68 >= 0) & (f.lmk68 <= 1)).all(-1)
    assert inside.mean() > 0.97
    frontal = f.attr[:, 3] == 2
    assert (f.lmk5[frontal, 0, 0] < f.lmk5[frontal, 1, 0]).all()  # image-left eye first
    assert (f.lmk68[frontal, 36, 0] < f.lmk68[frontal, 45, 0]).all()
    np.testing.assert_allclose(f.lmk5[:, 2], f.lmk68[:, 30])  # nose tip
    np.testing.assert_allclose(f.lmk5[:, 3:], f.lmk68[:, [48, 54]])  # mouth corners


def test_landmarks_sit_on_drawn_features(many):
    nose, eyes = many.lmk5[:, 2], many.lmk5[:, :2]
    cheek = nose + 0.6 * (eyes[:, 0] - nose) * np.array([1.6, 0.3])  # skin beside the nose
    skin_rgb = pixel_at(many, cheek).astype(int)
    for e in range(2):  # the iris/pupil under the eye landmark is not skin
        assert (np.abs(pixel_at(many, eyes[:, e]).astype(int) - skin_rgb).sum(1) > 60).mean() > 0.95
    lips = pixel_at(many, many.lmk68[:, [51, 57]].mean(1)).astype(int)
    redder = (lips[:, 0] - lips[:, 1]) > (skin_rgb[:, 0] - skin_rgb[:, 1]) + 5
    darker = luminance(lips) < luminance(skin_rgb) - 0.08
    assert (redder | darker).mean() > 0.9


def _render_with_aus(aus: dict[int, float], size: int = 64):
    """One clean face rendered with exactly the given AU intensities (via the private pipeline)."""
    draws = syn._Draws(np.random.default_rng(0).random((1, syn._DRAWS_PER_SAMPLE)))
    syn._sample_expression(draws, np.eye(7)[0])
    identity, style = syn._sample_style(draws, 0.0, size)
    style["glasses"][:] = 0
    raw = np.zeros((1, len(SYNTHETIC_AU_IDS)), np.float32)
    for au_id, value in aus.items():
        raw[0, au_col(au_id)] = value
    identity.update({k: raw[:, au_col(12 if "12" in k else 14)].copy() for k in ("a12L", "a12R", "a14L", "a14R")})
    g = _geometry.face_geometry(identity, raw, SYNTHETIC_AU_IDS)
    bank = np.zeros((2 * size, 2 * size, 3), np.float32)
    return _draw.render(g, style, size, bank)[0], _geometry.landmarks(g)[1][0] * size


@pytest.mark.parametrize("au_id", [12, 20])
def test_mouth_corner_moves_with_pixels(au_id):
    neutral, lmk0 = _render_with_aus({})
    acted, lmk1 = _render_with_aus({au_id: 1.0})
    for corner in (48, 54):
        moved = np.linalg.norm(lmk1[corner] - lmk0[corner])
        assert moved > 1.0, (au_id, corner, moved)
        # the drawing changed around the new corner position
        x, y = np.round(lmk1[corner]).astype(int)
        diff = np.abs(acted.astype(int) - neutral.astype(int)).sum(-1)[y - 2:y + 3, x - 2:x + 3]
        assert diff.max() > 30
    assert np.abs(acted.astype(int) - neutral.astype(int)).sum(-1)[:20].max() == 0  # brows untouched


@pytest.mark.parametrize("au_id, moves_up", [(1, True), (4, False)])
def test_brows_follow_au(au_id, moves_up):
    _, lmk0 = _render_with_aus({})
    _, lmk1 = _render_with_aus({au_id: 1.0})
    dy = lmk1[21, 1] - lmk0[21, 1]  # inner end of the image-left brow
    assert (dy < -1.0) if moves_up else (dy > 1.0)


def test_invalid_arguments():
    with pytest.raises(FacemtlError):
        generate_faces(4, image_size=16)
    with pytest.raises(FacemtlError):
        generate_faces(4, num_expr_classes=6)
    with pytest.raises(FacemtlError):
        generate_faces(4, class_probs=[1.0, 0.0])
    with pytest.raises(FacemtlError):
        generate_faces(-1)
    with pytest.raises(FacemtlError):
        generate_faces(4, seed=-3)
    assert len(generate_faces(0)) == 0
