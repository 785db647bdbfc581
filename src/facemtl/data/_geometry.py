"""Face geometry, landmarks and pixel frames for :mod:`facemtl.data.synthetic`.

Frames. A face lives in a *canonical* frame: unit = face half-height, origin mid-face,
x towards image-right, y down. Head yaw follows a cylinder of radius ``R`` (about the
face half-width): a canonical point ``x`` projects to ``x' = R sin(asin(x / R) + yaw)``.
The head silhouette (skin, hair, neck) is drawn in the projected frame ``(x', y)``; every
facial feature is drawn in canonical coordinates recovered per pixel by inverting the
cylinder, so features shift, compress and disappear behind the cheek exactly as their
landmarks (computed with the forward map) do. Roll, scale and shift then map the
projected frame to pixels.

Every per-sample value is a float32 ``[n]`` array, so per-pixel maps stay float32.
"""

from __future__ import annotations

import numpy as np

Arr = np.ndarray
_BACK = np.float32(9.0)  # canonical x of pixels off the visible face: no feature reaches it


def au_getter(au_raw: Arr, au_ids: tuple[int, ...]):
    """Column accessor ``get(12) -> [n]`` for raw AU intensities (zeros for AUs not drawn)."""
    zero = np.zeros(len(au_raw), np.float32)
    cols = {aid: au_raw[:, i] for i, aid in enumerate(au_ids)}

    def get(au_id: int) -> Arr:
        return cols.get(au_id, zero)

    return get


def face_geometry(p: dict[str, Arr], au_raw: Arr, au_ids: tuple[int, ...]) -> dict[str, Arr]:
    """Canonical shape of each face from identity parameters and AU intensities.

    Args:
        p: identity/pose parameters, each ``[n]`` float32 (see ``synthetic._sample_identity``);
            ``a12L, a12R, a14L, a14R`` carry the per-side intensities of AU12 and AU14.
        au_raw: ``[n, A]`` raw AU intensities in [0, 1] (faint ones included).
        au_ids: the FACS numbers of the columns of ``au_raw``.

    Returns:
        Dict of ``[n]`` float32 arrays: outline, eye, brow, nose and mouth geometry, and
        the strengths of wrinkle-like marks.
    """
    au = au_getter(au_raw, au_ids)
    f = np.float32
    g = {k: p[k] for k in ("fa", "ftop", "jaw_k", "ex", "ey", "ew", "lid_th", "yaw", "roll", "scale", "cx", "cy")}
    g["fbot"] = p["fbot"] + f(0.2) * au(26)
    # eyes: AU5 widens, AU7 narrows, AU6 pushes the lower lid up, AU43 closes
    g["hu"] = p["eh"] * (1 + f(0.9) * au(5)) * (1 - f(0.5) * au(7)) * (1 - f(0.9) * au(43))
    g["hl"] = p["eh"] * f(0.7) * (1 - f(0.55) * au(6)) * (1 - f(0.5) * au(7)) * (1 - f(0.8) * au(43))
    # brows: AU1 inner up, AU2 outer up, AU4 down and together
    g["b_in_y"] = p["by"] - f(0.2) * au(1) + f(0.13) * au(4) + f(0.03) * au(9)
    g["b_out_y"] = p["by"] - f(0.02) - f(0.2) * au(2) + f(0.05) * au(4)
    g["b_in_x"] = f(0.1) - f(0.06) * au(4)
    g["b_out_x"] = p["ex"] + p["ew"] + f(0.06)
    g["b_arch"] = p["b_arch"] * (1 + f(0.6) * au(2))
    g["b_th"] = p["b_th"]
    # nose: AU9/AU10 pull it up; the tip protrudes, so yaw shifts it beyond the surface
    g["ny"] = p["ny"] - f(0.035) * au(9) - f(0.015) * au(10)
    g["dn"] = np.clip(f(0.3) * np.tan(p["yaw"]), -0.55, 0.55).astype(np.float32)
    _mouth_geometry(g, p, au)
    g["furrow"] = au(4)
    g["cheek"] = au(6)
    g["wrinkle"] = au(9)
    g["chin"] = au(17)
    g["dimL"], g["dimR"] = p["a14L"], p["a14R"]
    lip_raise = f(0.6) * (au(9) + au(10))
    g["nasoL"] = np.minimum(f(0.25) + f(0.75) * (p["a12L"] + lip_raise), f(1))
    g["nasoR"] = np.minimum(f(0.25) + f(0.75) * (p["a12R"] + lip_raise), f(1))
    return g


def _mouth_geometry(g: dict[str, Arr], p: dict[str, Arr], au) -> None:
    f = np.float32
    down = f(0.16) * au(15) + f(0.03) * au(20)
    g["liftL"] = f(0.2) * p["a12L"] - down
    g["liftR"] = f(0.2) * p["a12R"] - down
    common = p["mw"] + f(0.1) * au(20) - f(0.035) * au(23) - f(0.025) * au(24)
    g["mwL"] = common + f(0.07) * p["a12L"] - f(0.045) * p["a14L"]
    g["mwR"] = common + f(0.07) * p["a12R"] - f(0.045) * p["a14R"]
    thin = (1 - f(0.6) * au(23)) * (1 - f(0.5) * au(24)) * (1 - f(0.25) * au(20))
    gap = (f(0.09) * au(25) + f(0.24) * au(26)) * (1 - f(0.8) * au(24))
    g["ou"] = f(0.3) * gap + f(0.05) * au(10) + f(0.015) * au(9)
    g["ol"] = f(0.7) * gap
    g["lu"] = p["lu"] * thin
    g["ll"] = p["ll"] * thin * (1 - f(0.35) * au(17))
    g["my"] = p["my"] + f(0.06) * au(26) - f(0.015) * au(10)


# ---------------------------------------------------------------------------- landmarks

def cyl_forward(x: Arr, g: dict[str, Arr]) -> Arr:
    """Canonical x -> projected x' (points beyond the visible rim stay on the rim)."""
    r = _radius(g)[..., None] if x.ndim == 2 else _radius(g)
    yaw = g["yaw"][:, None] if x.ndim == 2 else g["yaw"]
    theta = np.arcsin(np.clip(x / r, -1, 1)) + yaw
    return r * np.sin(np.clip(theta, -np.pi / 2, np.pi / 2))


def _radius(g: dict[str, Arr]) -> Arr:
    return g["fa"] * np.float32(1.05)


def _to_image(xp: Arr, y: Arr, g: dict[str, Arr]) -> Arr:
    """Projected frame ``[n, K]`` -> normalised image coordinates ``[n, K, 2]``."""
    c, s = np.cos(g["roll"])[:, None], np.sin(g["roll"])[:, None]
    sc = g["scale"][:, None]
    px = g["cx"][:, None] + sc * (c * xp - s * y)
    py = g["cy"][:, None] + sc * (s * xp + c * y)
    return np.stack([px, py], axis=-1).astype(np.float32)


def _jaw(g: dict[str, Arr]) -> tuple[Arr, Arr]:
    """17 points on the drawn silhouette, image-left ear level -> chin -> image-right."""
    beta = np.linspace(-np.pi / 2 - 0.1, np.pi / 2 + 0.1, 17)[None, :]
    sx, cy = np.sin(beta) ** 2, np.cos(beta) ** 2
    lower = np.cos(beta) > 0
    kxy = np.where(lower, g["jaw_k"][:, None], 0.0) * sx * cy
    # rho^2 solves k*X*Y*z^2 - z + 1 = 0: the squared-jaw ellipse drawn by _draw._face
    z = np.where(kxy > 1e-6, (1 - np.sqrt(np.maximum(1 - 4 * kxy, 0))) / (2 * np.maximum(kxy, 1e-6)), 1.0)
    rho = np.sqrt(z)
    b = np.where(lower, g["fbot"][:, None], g["ftop"][:, None])
    return g["fa"][:, None] * rho * np.sin(beta), b * rho * np.cos(beta)


def _brow_y(tb: Arr, g: dict[str, Arr]) -> Arr:
    return g["b_in_y"][:, None] + (g["b_out_y"] - g["b_in_y"])[:, None] * tb - 4 * g["b_arch"][:, None] * tb * (1 - tb)


def landmarks(g: dict[str, Arr]) -> tuple[Arr, Arr]:
    """Landmarks of the drawn faces.

    Returns:
        ``(lmk5 [n, 5, 2], lmk68 [n, 68, 2])`` float32, (x, y) / image size; 68 points in
        iBUG order, 5 points in ``tasks.LANDMARKS_5`` order (eye centres, nose tip, mouth corners).
    """
    def col(key: str) -> Arr:
        return g[key][:, None]

    tb = np.array([1, 0.75, 0.5, 0.25, 0.0])[None, :]
    bx = col("b_in_x") + (col("b_out_x") - col("b_in_x")) * tb
    brow_x = np.concatenate([-bx, bx[:, ::-1]], 1)
    brow_y = np.concatenate([_brow_y(tb, g), _brow_y(tb[:, ::-1], g)], 1)
    frac = np.array([0, 1 / 3, 2 / 3, 1.0])[None, :]
    top = col("ey") - 0.02
    bridge_y = top + (col("ny") - 0.03 - top) * frac
    nose_x = np.concatenate([col("dn") * frac, col("dn") + np.array([[-0.09, -0.045, 0, 0.045, 0.09]])], 1)
    nose_y = np.concatenate([bridge_y, col("ny") + np.array([[0, 0.015, 0.025, 0.015, 0]])], 1)
    te = np.array([[1, 0.4, -0.4, -1, -0.4, 0.4]])  # outer, upper, upper, inner, lower, lower
    upper = np.array([[0, 1, 1, 0, -1, -1]])
    lid = np.where(upper > 0, -col("hu"), col("hl")) * (1 - te**2)
    eye_x = np.concatenate([-(col("ex") + col("ew") * te), col("ex") + col("ew") * te[:, [3, 2, 1, 0, 5, 4]]], 1)
    eye_y = col("ey") + np.concatenate([lid, lid[:, [3, 2, 1, 0, 5, 4]]], 1)
    mouth_x, mouth_y = _mouth_points(g)
    jaw_x, jaw_y = _jaw(g)
    feat_x = cyl_forward(np.concatenate([brow_x, nose_x, eye_x, mouth_x], 1), g)
    xp = np.concatenate([jaw_x, feat_x], 1)
    yp = np.concatenate([jaw_y, brow_y, nose_y, eye_y, mouth_y], 1)
    lmk68 = _to_image(xp, yp, g)
    centres = _to_image(cyl_forward(np.stack([-g["ex"], g["ex"]], 1), g), np.stack([g["ey"]] * 2, 1), g)
    lmk5 = np.concatenate([centres, lmk68[:, [30, 48, 54]]], 1)
    return lmk5, lmk68


def _mouth_points(g: dict[str, Arr]) -> tuple[Arr, Arr]:
    """Mouth points 48-67 on the drawn lip contours (see ``_mouth``)."""
    t = np.array([[-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3,
                   -1, -0.5, 0, 0.5, 1, 0.5, 0, -0.5]])
    kind = np.array([[0, 1, 1, 1, 1, 1, 0, 2, 2, 2, 2, 2, 0, 3, 3, 3, 0, 4, 4, 4]])  # 1/2 outer, 3/4 inner
    left = t < 0
    mw = np.where(left, g["mwL"][:, None], g["mwR"][:, None])
    lift = np.where(left, g["liftL"][:, None], g["liftR"][:, None])
    gg = 1 - t**2
    c = g["my"][:, None] - lift * t**2
    ou, ol, lu, ll = (g[k][:, None] for k in ("ou", "ol", "lu", "ll"))
    off = np.select([kind == 1, kind == 2, kind == 3, kind == 4],
                    [-ou * gg - lu * np.sqrt(gg), ol * gg + ll * np.sqrt(gg), -ou * gg, ol * gg], 0.0)
    return t * mw, c + off


# ---------------------------------------------------------------------------- per-pixel frames

def pixel_frames(g: dict[str, Arr], size: int, xs: Arr | None = None, ys: Arr | None = None) -> tuple[Arr, Arr, Arr]:
    """Projected coordinates ``(x', y)`` of pixel centres and px/unit ``k [n, 1, 1]``.

    Args:
        g: geometry, ``[n]`` arrays.
        size: image side S.
        xs, ys: pixel-centre coordinates ``[n, 1, W]`` and ``[n, H, 1]``; default the whole image.

    Returns:
        ``(x', y, k)`` with ``x', y`` of shape ``[n, H, W]``.
    """
    k = (g["scale"] * np.float32(size))[:, None, None]
    a = (np.cos(g["roll"]) / k[:, 0, 0]).astype(np.float32)[:, None, None]
    b = (np.sin(g["roll"]) / k[:, 0, 0]).astype(np.float32)[:, None, None]
    cx, cy = (g["cx"] * size)[:, None, None], (g["cy"] * size)[:, None, None]
    if xs is None:
        grid = np.arange(size, dtype=np.float32) + np.float32(0.5)
        xs, ys = grid[None, None, :], grid[None, :, None]
    up = xs * a + (ys * b - (cx * a + cy * b))
    v = ys * a - (xs * b - (cx * b - cy * a))
    return up, v, k


def canonical_x(up: Arr, g: dict[str, Arr]) -> Arr:
    """Invert the cylinder per pixel; pixels off the visible face side get ``_BACK``: no feature lands there."""
    r = _radius(g)[:, None, None]
    cy_, sy = np.cos(g["yaw"])[:, None, None], np.sin(g["yaw"])[:, None, None]
    d2 = r * r - up * up
    depth = np.sqrt(np.maximum(d2, 0))
    u = up * cy_ - depth * sy
    back = (depth * cy_ + up * sy < 0) | (d2 < 0)  # behind the head, or beside it
    return np.where(back, _BACK, u)


class Window:
    """Per-sample pixel windows around a canonical box, to draw small features cheaply.

    Every face of the chunk gets a window of the same size ``[H, W]`` placed over its own
    box (after pose), clamped inside the image; features are evaluated on the window only
    and written back. Pixels outside it are untouched, and a pixel's value does not depend
    on the window, so results do not depend on how faces are chunked.

    Attributes:
        u, v: canonical coordinates ``[n, H, W]`` (``u`` after the cylinder inverse).
        k: px per unit ``[n, 1, 1]``.
    """

    def __init__(self, g: dict[str, Arr], size: int, box: tuple[Arr, Arr, Arr, Arr], margin: int = 2) -> None:
        x0, x1, y0, y1 = (np.broadcast_to(np.asarray(b, np.float32), g["fa"].shape) for b in box)
        xp = np.stack([cyl_forward(x0, g), cyl_forward(x1, g)] * 2, 1)
        pix = _to_image(xp, np.stack([y0, y0, y1, y1], 1), g) * size  # [n, 4 corners, 2]
        lo = np.floor(pix.min(1)).astype(np.int64) - margin
        hi = np.ceil(pix.max(1)).astype(np.int64) + margin
        w, h = np.minimum((hi - lo).max(0), size) if len(lo) else (1, 1)
        ox = np.clip(lo[:, 0], 0, size - w)[:, None, None]
        oy = np.clip(lo[:, 1], 0, size - h)[:, None, None]
        xs = (ox + np.arange(w)[None, None, :]).astype(np.float32) + np.float32(0.5)
        ys = (oy + np.arange(h)[None, :, None]).astype(np.float32) + np.float32(0.5)
        n = len(ox)
        self.index = (np.arange(n)[:, None, None] * size + (oy + np.arange(h)[None, :, None])) * size \
            + (ox + np.arange(w)[None, None, :])
        up, self.v, self.k = pixel_frames(g, size, xs, ys)
        self.u = canonical_x(up, g)

    def gather(self, img: list[Arr]) -> list[Arr]:
        """Window crops of the ``[n, S, S]`` channels."""
        return [np.take(c.reshape(-1), self.index) for c in img]

    def scatter(self, img: list[Arr], crops: list[Arr]) -> None:
        """Write window crops back into the channels (in place)."""
        for c, crop in zip(img, crops, strict=True):
            c.reshape(-1)[self.index] = crop
