"""Procedural faces with FACS action units: the built-in benchmark of facemtl.

Each face is drawn from parameters, and every label comes from the same parameters:

- an expression class picks EMFACS core AUs, but only partially (core AUs sometimes
  missing, "often" AUs sometimes present, random extra AUs, per-AU intensities), so
  AU detection and expression recognition inform each other without being one task;
- an AU is *present* when its intensity reaches ``AU_THRESHOLD`` (FACS "B" or more);
  weaker traces are still drawn, faintly, and labelled absent;
- valence/arousal sit on the circumplex at the class's direction, scaled by the
  expression intensity, with per-sample spread;
- landmarks are the drawn contours after yaw, roll, scale and shift;
- gender (face shape, hair), glasses and pose are independent of the expression;
  smile follows AU12 presence, as in real data.

Nuisances (colours, clutter, lighting, pose range, blur, noise, occluders) scale with
``difficulty``. Per-sample randomness is read row by row from one uniform stream, so the
result is bit-identical for any ``chunk_size`` and the first ``n`` faces of a larger set
equal a set of ``n`` faces. Rendering is vectorised numpy (see ``_draw.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facemtl.data._draw import render
from facemtl.data._geometry import face_geometry, landmarks
from facemtl.errors import FacemtlError

#: FACS numbers of the AU label columns (BP4D's 12, DISFA's 8 and ABAW's 8 are all included).
SYNTHETIC_AU_IDS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43)

_DRAWS_PER_SAMPLE = 320  # uniform numbers reserved per face; fixed so streams never shift
_BLOCK_PIXELS = 1 << 18


@dataclass(frozen=True)
class SyntheticFaces:
    """A generated set of faces with labels for all five tasks.

    Attributes:
        images: ``[N, H, W, 3]`` uint8 RGB.
        expr: ``[N]`` int64 class id in ``tasks.EXPR_CLASSES_8`` order (7 = contempt).
        au: ``[N, A]`` float32 AU presence (0/1), columns ``SYNTHETIC_AU_IDS``.
        au_intensity: ``[N, A]`` float32 intensity in [0, 1], 0 where absent.
        va: ``[N, 2]`` float32 valence, arousal in [-1, 1].
        intensity: ``[N]`` float32 expression intensity in [0, 1] (0 for neutral).
        lmk5: ``[N, 5, 2]`` float32 (x, y) / image size in ``tasks.LANDMARKS_5`` order.
        lmk68: ``[N, 68, 2]`` float32 (x, y) / image size, iBUG-68 order.
        attr: ``[N, 4]`` int64 gender, smile, glasses, pose (``tasks.DEFAULT_ATTRIBUTES`` ids;
            pose "left" = the face turned towards image-left).
    """

    images: np.ndarray
    expr: np.ndarray
    au: np.ndarray
    au_intensity: np.ndarray
    va: np.ndarray
    intensity: np.ndarray
    lmk5: np.ndarray
    lmk68: np.ndarray
    attr: np.ndarray

    def __len__(self) -> int:
        return len(self.expr)


def generate_faces(
    num: int,
    image_size: int = 64,
    seed: int = 0,
    num_expr_classes: int = 7,
    class_probs: Sequence[float] | None = None,
    difficulty: float = 1.0,
    chunk_size: int = 256,
) -> SyntheticFaces:
    """Generate ``num`` synthetic faces and their labels.

    Args:
        num: number of faces N (>= 0).
        image_size: side S of the square images, 32 to 224 pixels.
        seed: random seed; same arguments give bit-identical arrays.
        num_expr_classes: 7 (AffectNet-7) or 8 (adds contempt, one-sided AU12 + AU14).
        class_probs: expression sampling distribution (length ``num_expr_classes``),
            e.g. to make the benchmark imbalanced; default uniform.
        difficulty: nuisance scale: 0 = clean frontal faces, 1 = the default benchmark.
        chunk_size: at most this many faces are rendered at once (fewer when they are large,
            to stay cache-friendly); bounds working memory, never changes the result.

    Returns:
        A :class:`SyntheticFaces` with N faces.

    Raises:
        FacemtlError: on an invalid argument.
    """
    probs = _check_args(num, image_size, seed, num_expr_classes, class_probs, difficulty, chunk_size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    # shared sensor-noise texture; each face crops it at its own offset
    bank = np.random.default_rng(np.random.SeedSequence([seed, 1])).standard_normal(
        (2 * image_size, 2 * image_size, 3), dtype=np.float32)
    a = len(SYNTHETIC_AU_IDS)
    out = {
        "images": np.empty((num, image_size, image_size, 3), np.uint8),
        "expr": np.empty(num, np.int64), "au": np.empty((num, a), np.float32),
        "au_intensity": np.empty((num, a), np.float32), "va": np.empty((num, 2), np.float32),
        "intensity": np.empty(num, np.float32), "lmk5": np.empty((num, 5, 2), np.float32),
        "lmk68": np.empty((num, 68, 2), np.float32), "attr": np.empty((num, 4), np.int64),
    }
    # render in blocks whose per-pixel maps stay cache-sized: faster than big chunks
    step = min(chunk_size, max(8, _BLOCK_PIXELS // (image_size * image_size)))
    for start in range(0, num, step):
        n = min(step, num - start)
        chunk = _generate_chunk(rng.random((n, _DRAWS_PER_SAMPLE)), image_size, probs, difficulty, bank)
        for key, value in chunk.items():
            out[key][start:start + n] = value
    return SyntheticFaces(**out)


def _generate_chunk(uniforms: np.ndarray, size: int, probs: np.ndarray, difficulty: float,
                    bank: np.ndarray) -> dict[str, np.ndarray]:
    draws = _Draws(uniforms)
    labels, raw, sides = _sample_expression(draws, probs)
    identity, style = _sample_style(draws, difficulty, size)
    identity.update(sides)
    geometry = face_geometry(identity, raw, SYNTHETIC_AU_IDS)
    lmk5, lmk68 = landmarks(geometry)
    pose = _pose_bin(identity["yaw"])
    smile = labels["au"][:, SYNTHETIC_AU_IDS.index(12)].astype(np.int64)
    attr = np.stack([identity["female"].astype(np.int64), smile, style["glasses"].astype(np.int64), pose], 1)
    return {**labels, "lmk5": lmk5, "lmk68": lmk68, "attr": attr, "images": render(geometry, style, size, bank)}


def _pose_bin(yaw: np.ndarray) -> np.ndarray:
    """Yaw (radians, > 0 = turned towards image-right) -> 5 MTFL-style bins at +-15 and +-45 degrees."""
    edges = np.deg2rad([-45.0, -15.0, 15.0, 45.0])
    return np.searchsorted(edges, yaw).astype(np.int64)


def _check_args(num: int, image_size: int, seed: int, num_expr_classes: int, class_probs: Sequence[float] | None,
                difficulty: float, chunk_size: int) -> np.ndarray:
    if num < 0:
        raise FacemtlError(f"num must be >= 0, got {num}")
    if not 32 <= image_size <= 224:
        raise FacemtlError(f"image_size must be in [32, 224], got {image_size}")
    if num_expr_classes not in (7, 8):
        raise FacemtlError(f"num_expr_classes must be 7 or 8, got {num_expr_classes}")
    if difficulty < 0:
        raise FacemtlError(f"difficulty must be >= 0, got {difficulty}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FacemtlError(f"seed must be a non-negative integer, got {seed!r}")
    if chunk_size < 1:
        raise FacemtlError(f"chunk_size must be >= 1, got {chunk_size}")
    if class_probs is None:
        return np.full(num_expr_classes, 1.0 / num_expr_classes)
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.shape != (num_expr_classes,) or (probs < 0).any() or probs.sum() <= 0:
        raise FacemtlError(
            f"class_probs must be {num_expr_classes} non-negative numbers with a positive sum, got {list(class_probs)}")
    return probs / probs.sum()


# ---------------------------------------------------------------------------- sampling

#: an AU is coded present from this intensity on (FACS "B"); weaker traces are drawn, coded absent
AU_THRESHOLD = 0.2

#: EMFACS-style prototypes: class id -> (core AUs, often-also AUs); AU16 of disgust is not drawn
_PROTOTYPES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    1: ((6, 12), (25,)),
    2: ((1, 4, 15), (17,)),
    3: ((1, 2, 5, 26), (25,)),
    4: ((1, 2, 4, 5, 20, 26), (7, 25)),
    5: ((9, 15), (10, 17)),
    6: ((4, 5, 7, 23), (24, 17)),
    7: ((12, 14), ()),
}
#: (valence, arousal) direction of each class on the circumplex, reached at full intensity
_VA_CENTRES = np.array([[0.0, 0.0], [0.75, 0.4], [-0.65, -0.45], [0.15, 0.8], [-0.6, 0.7],
                        [-0.65, 0.35], [-0.7, 0.6], [-0.5, 0.25]])
_P_CORE, _P_OFTEN, _P_EXTRA, _P_EXTRA_NEUTRAL = 0.8, 0.4, 0.05, 0.03  # per AU


def _au_masks() -> tuple[np.ndarray, np.ndarray]:
    core = np.zeros((8, len(SYNTHETIC_AU_IDS)), bool)
    often = np.zeros_like(core)
    for cls, (c, o) in _PROTOTYPES.items():
        core[cls, [SYNTHETIC_AU_IDS.index(a) for a in c]] = True
        often[cls, [SYNTHETIC_AU_IDS.index(a) for a in o]] = True
    return core, often


_CORE, _OFTEN = _au_masks()


class _Draws:
    """Hands out columns of a per-sample uniform matrix ``[n, K]``, one column per random number."""

    def __init__(self, uniforms: np.ndarray) -> None:
        self.u, self.i = uniforms, 0

    def uniform(self, lo: float = 0.0, hi: float = 1.0, k: int | None = None) -> np.ndarray:
        width = 1 if k is None else k
        if self.i + width > self.u.shape[1]:
            raise RuntimeError("synthetic: raise _DRAWS_PER_SAMPLE")
        x = lo + (hi - lo) * self.u[:, self.i:self.i + width]
        self.i += width
        return x[:, 0] if k is None else x

    def normal(self, mean: float = 0.0, sd: float = 1.0, k: int | None = None) -> np.ndarray:
        u1, u2 = self.uniform(k=k), self.uniform(k=k)  # Box-Muller keeps one column per number
        return mean + sd * np.sqrt(-2 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)

    def bernoulli(self, p: float | np.ndarray) -> np.ndarray:
        return self.uniform() < p

    def choice(self, probs: np.ndarray) -> np.ndarray:
        edges = np.cumsum(probs)
        # inner edges only, normalised: rounding can never select a zero-probability last class
        return np.searchsorted(edges[:-1] / edges[-1], self.uniform(), side="right")

    def palette(self, colours: list, probs: list, jitter: float) -> np.ndarray:
        return np.clip(np.asarray(colours)[self.choice(np.asarray(probs))] + self.normal(0, jitter, k=3), 0, 1)


def _sample_expression(d: _Draws, probs: np.ndarray) -> tuple[dict, np.ndarray, dict]:
    """Expression, AU intensities (raw, drawn) and labels; AU12/AU14 per side for contempt."""
    n, a = len(d.u), len(SYNTHETIC_AU_IDS)
    expr = d.choice(probs)
    active = expr > 0
    inten = np.where(active, d.uniform(0.2, 1.0), 0.0)
    core, often = _CORE[expr], _OFTEN[expr]
    core_on = core & (d.uniform(k=a) < _P_CORE)
    pick = np.argmax(core * d.uniform(k=a), axis=1)  # at least one core AU always acts
    core_on[np.arange(n), pick] |= core.any(1)
    often_on = often & (d.uniform(k=a) < _P_OFTEN)
    p_extra = np.where(active, _P_EXTRA, _P_EXTRA_NEUTRAL)[:, None]
    extra_on = ~core & ~often & (d.uniform(k=a) < p_extra)
    core_i = np.minimum(inten[:, None] * d.uniform(0.6, 1.3, k=a), 1)
    often_i = inten[:, None] * d.uniform(0.3, 1.0, k=a)
    e = d.uniform(k=a)  # neutral faces only get weak extras
    extra_i = np.where(active[:, None], 0.1 + 0.7 * e, 0.05 + 0.3 * e)
    raw = np.maximum(np.maximum(core_on * core_i, often_on * often_i), extra_on * extra_i)
    right = d.bernoulli(0.5)
    left_on, right_on = (expr != 7) | ~right, (expr != 7) | right  # contempt acts on one side only
    i12, i14 = SYNTHETIC_AU_IDS.index(12), SYNTHETIC_AU_IDS.index(14)
    sides = {"a12L": raw[:, i12] * left_on, "a12R": raw[:, i12] * right_on,
             "a14L": raw[:, i14] * left_on, "a14R": raw[:, i14] * right_on}
    present = raw >= AU_THRESHOLD
    va = np.clip(_VA_CENTRES[expr] * inten[:, None] + d.normal(0, 0.12, k=2), -1, 1)
    labels = {"expr": expr.astype(np.int64), "au": present.astype(np.float32),
              "au_intensity": np.where(present, raw, 0).astype(np.float32),
              "va": va.astype(np.float32), "intensity": inten.astype(np.float32)}
    return labels, raw.astype(np.float32), {k: v.astype(np.float32) for k, v in sides.items()}


def _sample_identity(d: _Draws, diff: float) -> dict[str, np.ndarray]:
    """Face shape (gender-dependent), feature placement and head pose."""
    fem = d.bernoulli(0.5).astype(np.float64)
    p = {"female": fem, "fa": 0.8 - 0.06 * fem + d.normal(0, 0.025), "ftop": 1.05 + d.normal(0, 0.03),
         "fbot": 1.0 - 0.03 * fem + d.normal(0, 0.04), "jaw_k": np.where(fem > 0, 0.3, 0.7) * d.uniform(0.1, 1.0),
         "ex": 0.33 + d.normal(0, 0.015), "ey": -0.1 + d.normal(0, 0.025), "ew": 0.17 + 0.01 * fem + d.normal(0, 0.01),
         "eh": 0.085 + d.normal(0, 0.007), "lid_th": 0.014 + 0.01 * fem, "b_arch": d.uniform(0.01, 0.05),
         "b_th": 0.035 + 0.012 * (1 - fem) + d.normal(0, 0.005), "ny": 0.3 + d.normal(0, 0.02),
         "my": 0.58 + d.normal(0, 0.02), "mw": 0.28 + d.normal(0, 0.015),
         "lu": 0.045 + 0.01 * fem + d.normal(0, 0.006), "ll": 0.06 + 0.012 * fem + d.normal(0, 0.008)}
    p["by"] = p["ey"] - 0.2 + d.normal(0, 0.02)
    # pose: mostly near frontal, a wide tail reaching the profile bins
    yaw = np.where(d.bernoulli(0.12), d.uniform(-75, 75), d.normal(0, 15))
    p["yaw"] = np.deg2rad(np.clip(yaw * min(diff, 1.0), -80, 80))
    p["roll"] = np.deg2rad(np.clip(d.normal(0, 6) * diff, -30, 30))
    p["scale"] = 0.31 * np.exp(np.clip(d.normal(0, 0.06) * diff, -0.2, 0.2))
    p["cx"] = 0.5 + np.clip(d.normal(0, 0.025) * diff, -0.08, 0.08)
    p["cy"] = 0.47 + np.clip(d.normal(0, 0.025) * diff, -0.08, 0.08)
    return p


def _sample_colours(d: _Draws, fem: np.ndarray, diff: float) -> dict[str, np.ndarray]:
    tone = d.uniform()[:, None]
    skin = np.clip((1 - tone) * [0.96, 0.8, 0.68] + tone * [0.42, 0.28, 0.2] + d.normal(0, 0.025, k=3), 0, 1)
    lipstick = (fem > 0) & d.bernoulli(0.3)
    c = {"skin": skin, "blush": skin * [1.0, 0.62, 0.62],
         "lip": np.where(lipstick[:, None], [0.7, 0.15, 0.25], skin * [0.85, 0.52, 0.52]),
         "hair": d.palette([[0.07, 0.05, 0.04], [0.22, 0.13, 0.07], [0.42, 0.27, 0.14], [0.82, 0.68, 0.4],
                            [0.55, 0.22, 0.08], [0.6, 0.6, 0.6]], [0.3, 0.25, 0.18, 0.12, 0.07, 0.08], 0.03),
         "iris": d.palette([[0.33, 0.19, 0.09], [0.12, 0.08, 0.06], [0.28, 0.45, 0.65], [0.3, 0.45, 0.28]],
                           [0.4, 0.3, 0.18, 0.12], 0.03),
         "cloth": d.uniform(k=3), "frame": d.uniform(0, 0.5, k=3), "occ_rgb": d.uniform(k=3)}
    mix = min(diff, 1.0)  # difficulty 0: plain grey background
    c["bg1"] = 0.6 + mix * (d.uniform(k=3) - 0.6)
    c["bg2"] = 0.6 + mix * (d.uniform(k=3) - 0.6)
    return c


def _sample_style(d: _Draws, diff: float, size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Identity/pose (for geometry) and style/nuisance parameters (for rendering), float32."""
    ident = _sample_identity(d, diff)
    fem = ident["female"]
    s = _sample_colours(d, fem, diff)
    long_hair = d.bernoulli(np.where(fem > 0, 0.85, 0.15))
    bangs = d.bernoulli(np.where(fem > 0, 0.35, 0.15))
    s.update(hair_len=np.where(long_hair, d.uniform(0.8, 1.4), d.uniform(-0.45, 0.0)),
             hair_vol=d.uniform(0.08, 0.2) + 0.05 * fem,
             hairline=np.where(bangs, -0.42, -0.62) + d.normal(0, 0.04),
             glasses=d.bernoulli(0.3), lens_a=np.where(d.bernoulli(0.15), 0.85, 0.1))
    angle, (x0, y0) = d.uniform(0, 2 * np.pi), (d.uniform(), d.uniform())
    s.update(bg_nx=np.cos(angle), bg_ny=np.sin(angle), bg_d=np.cos(angle) * x0 + np.sin(angle) * y0,
             bg_split=d.bernoulli(min(1.0, 0.6 * diff)))
    for j in range(2):
        s.update({f"c{j}_a": d.bernoulli(min(1.0, 0.5 * diff)) * d.uniform(0.5, 1.0), f"c{j}_x": d.uniform(),
                  f"c{j}_y": d.uniform(), f"c{j}_rx": d.uniform(0.08, 0.35), f"c{j}_ry": d.uniform(0.08, 0.35),
                  f"c{j}_ang": d.uniform(0, np.pi), f"c{j}_rgb": d.uniform(k=3)})
    s.update(occ_a=d.bernoulli(min(0.9, 0.15 * diff)).astype(np.float64), occ_x=ident["cx"] + d.normal(0, 0.12),
             occ_y=ident["cy"] + d.uniform(-0.2, 0.3), occ_w=d.uniform(0.03, 0.12), occ_h=d.uniform(0.1, 0.35),
             occ_ang=d.uniform(0, np.pi))
    s.update(light_x=d.uniform(-0.3, 0.3) * diff, light_y=d.uniform(-0.3, 0.3) * diff,
             blur=d.bernoulli(min(1.0, 0.25 * diff)) * d.uniform(0.3, 1.0), noise_sd=d.uniform(0, 0.035) * diff,
             noise_ox=np.floor(d.uniform() * size), noise_oy=np.floor(d.uniform() * size))
    return ({k: np.asarray(v, np.float32) for k, v in ident.items()},
            {k: np.asarray(v, np.float32) for k, v in s.items()})
