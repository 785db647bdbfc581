"""Vectorised numpy rendering of the synthetic faces (used by :mod:`facemtl.data.synthetic`).

Every shape is an implicit function evaluated on the pixel grid of a whole chunk at once
(``[n, S, S]`` float32 maps); coverage ramps about one pixel wide give anti-aliasing, and
layers are alpha-composited back to front. Per-sample values are float32 ``[n]`` arrays
(colours ``[n, 3]``), so nothing is upcast. Geometry comes from :mod:`._geometry`; the same
numbers give the landmarks, which is why landmarks match the pixels.
"""

from __future__ import annotations

import numpy as np

from facemtl.data._geometry import Window, pixel_frames

Arr = np.ndarray
f32 = np.float32
_WHITE = np.array([0.96, 0.95, 0.92], np.float32)
_DARK = np.array([0.09, 0.06, 0.05], np.float32)


def ramp(x: Arr, k: Arr | float) -> Arr:
    """Coverage in [0, 1] from a signed distance ``x`` (canonical units, > 0 inside), ``k`` px/unit."""
    y = x * k
    y += f32(0.5)
    return np.clip(y, 0, 1, out=y)


def band(d: Arr, half: Arr | float, k: Arr | float) -> Arr:
    """Coverage of a stroke of half-width ``half`` centred on ``d == 0``."""
    return ramp(half - np.abs(d), k)


def over(img: list[Arr], alpha: Arr, rgb: Arr) -> None:
    """Composite colour ``rgb [n, 3]`` with coverage ``alpha [n, S, S]`` onto ``img`` in place."""
    for c in range(3):
        img[c] += alpha * (rgb[:, c, None, None] - img[c])


def _col(a: Arr) -> Arr:
    return a[:, None, None]


def render(g: dict[str, Arr], p: dict[str, Arr], size: int, bank: Arr) -> Arr:
    """Draw one chunk of faces.

    Args:
        g: geometry from :func:`._geometry.face_geometry`, ``[n]`` arrays.
        p: style and nuisance parameters, ``[n]`` or ``[n, 3]`` (colours) float32 arrays.
        size: image side S in pixels.
        bank: ``[2S, 2S, 3]`` float32 standard-normal noise, cropped per sample.

    Returns:
        ``[n, S, S, 3]`` uint8 RGB images.
    """
    up, v, k = pixel_frames(g, size)
    img = _background(p, size)
    _body(img, up, v, k, g, p)
    face_px = _face(img, up, v, k, g, p)
    # small features are drawn on per-face windows: most of the image never needs them
    upper = Window(g, size, _upper_box(g))
    _in_window(img, upper, _upper_features, g, p)
    _front_hair(img, up, v, k, face_px, g, p)  # bangs may cover the brows
    if p["glasses"].any():
        _in_window(img, upper, _glasses, g, p)
    _in_window(img, Window(g, size, _lower_box(g)), _lower_features, g, p)
    return _finish(img, p, size, bank)


def _upper_box(g: dict[str, Arr]) -> tuple:
    top = np.minimum(g["b_in_y"], g["b_out_y"]) - g["b_arch"] - g["b_th"] - f32(0.05)
    return -g["fa"] - f32(0.03), g["fa"] + f32(0.03), top, g["ey"] + f32(0.5)


def _lower_box(g: dict[str, Arr]) -> tuple:
    reach = f32(1.2) * np.maximum(g["mwL"], g["mwR"]) + f32(0.2)
    x0 = np.minimum(-reach, g["dn"] - f32(0.2))
    x1 = np.maximum(reach, g["dn"] + f32(0.2))
    return x0, x1, g["ey"] - f32(0.06), g["my"] + g["ol"] + g["ll"] + f32(0.22)


def _in_window(img: list[Arr], w: Window, draw, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    crop = w.gather(img)
    draw(crop, w, g, p)
    w.scatter(img, crop)


def _upper_features(img: list[Arr], w: Window, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    ua, v, k = np.abs(w.u), w.v, w.k
    px = f32(0.6) / k  # thinnest stroke half-width: thinner lines would vanish at small sizes
    dark, lines = np.zeros_like(v), np.zeros_like(v)  # near-black strokes; skin creases
    _cheeks(img, ua, v, k, g, p)
    _eyes(img, dark, lines, ua, v, k, px, g, p)
    _brows(dark, lines, ua, v, k, px, g)
    over(img, lines, p["skin"] * f32(0.55))
    over(img, dark, np.minimum(p["hair"] * f32(0.5), _DARK))


def _lower_features(img: list[Arr], w: Window, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    u, v, k = w.u, w.v, w.k
    ua, left = np.abs(u), u < 0
    px = f32(0.6) / k
    dark, lines = np.zeros_like(v), np.zeros_like(v)
    _nose(dark, lines, u, v, k, px, g)
    mw, lift = _mouth_sides(left, g)
    _creases(lines, ua, left, v, k, px, mw, lift, g)
    over(img, lines, p["skin"] * f32(0.55))  # under the lips
    _mouth(img, dark, u, v, k, px, mw, lift, g, p)
    over(img, dark, np.minimum(p["hair"] * f32(0.5), _DARK))


def _background(p: dict[str, Arr], size: int) -> list[Arr]:
    xs, ys = _unit_grid(size)
    # a wall edge: two background colours split by a random line
    split = ramp(xs * _col(p["bg_nx"]) + (ys * _col(p["bg_ny"]) - _col(p["bg_d"])), f32(size))
    split *= _col(p["bg_split"])
    img = [_col(p["bg1"][:, c]) + split * _col(p["bg2"][:, c] - p["bg1"][:, c]) for c in range(3)]
    for j in range(2):  # clutter: one ellipse, one rectangle, rotated
        q = {key: p[f"c{j}_{key}"] for key in ("a", "x", "y", "rx", "ry", "ang", "rgb")}
        _on_subset(img, q["a"], lambda crop, idx, q=q, j=j: _clutter(crop, {k: v[idx] for k, v in q.items()}, j, size))
    return img


def _unit_grid(size: int) -> tuple[Arr, Arr]:
    """Pixel centres in [0, 1]: ``x [1, 1, S]``, ``y [1, S, 1]``."""
    grid = (np.arange(size, dtype=f32) + f32(0.5)) / f32(size)
    return grid[None, None, :], grid[None, :, None]


def _on_subset(img: list[Arr], on: Arr, draw) -> None:
    """Run ``draw(crop, idx)`` on the faces where ``on != 0`` only; the others stay as they are."""
    idx = np.flatnonzero(on)
    if idx.size:
        crop = [c[idx] for c in img]
        draw(crop, idx)
        for c, part in zip(img, crop, strict=True):
            c[idx] = part


def _clutter(img: list[Arr], q: dict[str, Arr], j: int, size: int) -> None:
    xs, ys = _unit_grid(size)
    dx, dy = xs - _col(q["x"]), ys - _col(q["y"])
    ca, sa = _col(np.cos(q["ang"])), _col(np.sin(q["ang"]))
    xr = (dx * ca + dy * sa) / _col(q["rx"])
    yr = (dy * ca - dx * sa) / _col(q["ry"])
    inside = (1 - (xr * xr + yr * yr)) * f32(0.5) if j == 0 else 1 - np.maximum(np.abs(xr), np.abs(yr))
    over(img, ramp(inside, _col(q["rx"]) * f32(size)) * _col(q["a"]), q["rgb"])


def _body(img: list[Arr], up: Arr, v: Arr, k: Arr, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    """Clothes, hair behind the head, neck (projected frame: they do not turn with yaw)."""
    cloth = ramp(v - (_col(g["fbot"]) + f32(0.35) + f32(0.3) * up * up), k)
    over(img, cloth, p["cloth"])
    # hair mass: round on top, straight sides down to hair_len; shifts opposite to the face under yaw
    uh = (up + _col(f32(0.18) * np.sin(g["yaw"]))) / _col(g["fa"] + p["hair_vol"])
    vh = np.minimum(v, 0) / _col(g["ftop"] + p["hair_vol"])
    hair = ramp((1 - uh * uh - vh * vh) * f32(0.5), k * _col(g["fa"]))
    hair *= ramp(_col(p["hair_len"]) - v, k)
    over(img, hair, p["hair"])
    neck = ramp(_col(g["fa"] * f32(0.5)) - np.abs(up), k) * ramp(v, k)
    over(img, neck, p["skin"] * f32(0.8))


def _face(img: list[Arr], up: Arr, v: Arr, k: Arr, g: dict[str, Arr], p: dict[str, Arr]) -> Arr:
    """Skin: an ellipse with a squarer jaw below the midline, darker towards the rim.

    Returns the signed distance to the rim in pixels (> 0 inside), ``[n, S, S]``.
    """
    x2 = up / _col(g["fa"])
    x2 *= x2
    lower = v > 0
    y2 = v * np.where(lower, _col(1 / g["fbot"]), _col(1 / g["ftop"]))
    y2 *= y2
    # the jaw term is clamped so that it cannot pull far-away pixels back inside
    q = x2 + y2 - np.where(lower, _col(g["jaw_k"]), f32(0)) * np.minimum(x2, 1) * np.minimum(y2, 1)
    dist = (1 - q) * (k * _col(g["fa"] * f32(0.5)))
    face = np.clip(dist + f32(0.5), 0, 1)
    shade = f32(1) - f32(0.18) * np.minimum(q, 1)
    for c in range(3):
        img[c] += face * (_col(p["skin"][:, c]) * shade - img[c])
    return dist


def _cheeks(img: list[Arr], ua: Arr, v: Arr, k: Arr, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    """Cheek blush; AU6 raises and reddens the cheeks."""
    cy = _col(g["ey"] + f32(0.32) - f32(0.09) * g["cheek"])
    dx, dy = (ua - _col(g["ex"] + f32(0.06))) * f32(5.5), (v - cy) * f32(7)
    alpha = np.clip((1 - dx * dx - dy * dy) * f32(1.5), 0, 1) * _col(f32(0.1) + f32(0.3) * g["cheek"])
    over(img, alpha, p["blush"])


def _eyes(img, dark, lines, ua, v, k, px, g, p) -> None:
    """Sclera, iris and pupil inside the lids; upper-lid stroke; AU6 lower-lid bulge and crow's feet."""
    ex, ey, ew = _col(g["ex"]), _col(g["ey"]), _col(g["ew"])
    dx = ua - ex
    ge = dx / ew
    ge *= ge
    np.subtract(1, ge, out=ge)  # 1 at the eye centre, 0 at the corners
    yu, yl = ey - _col(g["hu"]) * ge, ey + _col(g["hl"]) * ge
    across = ramp(ge, k * ew * f32(0.5))
    sclera = ramp(v - yu, k) * ramp(yl - v, k) * across
    over(img, sclera, np.broadcast_to(_WHITE, p["iris"].shape))
    dy = v - ey
    d2 = dx * dx + dy * dy
    r_iris = ew * f32(0.42)
    iris = ramp(r_iris * r_iris - d2, k / (2 * r_iris)) * sclera
    over(img, iris, p["iris"])
    r_pupil = r_iris * f32(0.45)
    np.maximum(dark, ramp(r_pupil * r_pupil - d2, k / (2 * r_pupil)) * sclera, out=dark)
    lid = band(v - yu + px * f32(0.5), np.maximum(_col(g["lid_th"]), px), k) * ramp(ge + f32(0.2), k * ew * f32(0.5))
    np.maximum(dark, lid, out=dark)
    cheek = _col(g["cheek"])
    bulge = band(v - yl - f32(0.07), px, k) * across * cheek
    np.maximum(lines, bulge, out=lines)
    dc = ua - (ex + ew + f32(0.03))  # crow's feet fan out from the outer corner
    fan = band(np.abs(dy) - f32(0.6) * dc, px, k) * ramp(dc, k) * ramp(f32(0.1) - dc, k) * cheek
    np.maximum(lines, fan, out=lines)


def _brows(dark, lines, ua, v, k, px, g) -> None:
    """Brows as tapered strokes from the inner to the outer end; AU4 vertical furrows between them."""
    bix, span = _col(g["b_in_x"]), _col(g["b_out_x"] - g["b_in_x"])
    tb = (ua - bix) / span
    yc = _col(g["b_in_y"]) + _col(g["b_out_y"] - g["b_in_y"]) * tb - _col(4 * g["b_arch"]) * tb * (1 - tb)
    half = np.maximum(_col(g["b_th"]) * (f32(1) - f32(0.4) * tb), px)
    brow = band(v - yc, half, k) * ramp(tb, k * span) * ramp(1 - tb, k * span)
    np.maximum(dark, brow * f32(0.9), out=dark)
    furrow = band(ua - f32(0.04), px, k) * ramp(f32(0.07) - np.abs(v - _col(g["b_in_y"]) - f32(0.07)), k)
    np.maximum(lines, furrow * _col(g["furrow"]), out=lines)


def _nose(dark, lines, u, v, k, px, g) -> None:
    """Nostrils, a side line down the bridge, AU9 wrinkles across the bridge."""
    dn, ny, ey = _col(g["dn"]), _col(g["ny"]), _col(g["ey"])
    nx = (np.abs(u - dn) - f32(0.055)) * f32(30)
    nv = (v - ny - f32(0.012)) * f32(50)
    np.maximum(dark, ramp(1 - nx * nx - nv * nv, k * f32(0.012)) * f32(0.75), out=dark)
    top = ey + f32(0.04)
    frac = (v - top) / (ny - f32(0.04) - top)
    side = band(u - (f32(0.05) + (dn + f32(0.02)) * frac), px, k) * ramp(frac, f32(4)) * ramp(1 - frac, f32(4))
    np.maximum(lines, side * f32(0.45), out=lines)
    mid = u - dn * f32(0.3)
    wr = band(np.abs(v - ey - f32(0.1)) - f32(0.035), px, k) * ramp(f32(0.08) - np.abs(mid), k)
    np.maximum(lines, wr * _col(g["wrinkle"]), out=lines)


def _mouth_sides(left: Arr, g) -> tuple[Arr, Arr]:
    """Per-pixel half-width and corner lift: the two sides differ for one-sided AU12/AU14."""
    return (np.where(left, _col(g["mwL"]), _col(g["mwR"])), np.where(left, _col(g["liftL"]), _col(g["liftR"])))


def _creases(lines, ua, left, v, k, px, mw, lift, g) -> None:
    """Nasolabial folds (deepened by AU12/9/10), AU14 dimples, AU17 chin crease."""
    ny, my = _col(g["ny"]), _col(g["my"])
    tau = (v - ny) / (my + f32(0.06) - ny)
    xc = f32(0.12) + (mw + f32(0.02)) * tau
    fold = band(ua - xc, px, k) * ramp(tau, f32(3)) * ramp(1 - tau, f32(3))
    np.maximum(lines, fold * np.where(left, _col(g["nasoL"]), _col(g["nasoR"])), out=lines)
    ddx, ddy = ua - mw - f32(0.05), v - my + lift
    dimple = ramp(f32(0.0008) - ddx * ddx - ddy * ddy, k * f32(18)) * np.where(left, _col(g["dimL"]), _col(g["dimR"]))
    np.maximum(lines, dimple, out=lines)
    cy = my + _col(g["ol"] + g["ll"]) + f32(0.12) + f32(0.8) * ua * ua
    crease = band(v - cy, px, k) * ramp(f32(0.15) - ua, k) * _col(g["chin"])
    np.maximum(lines, crease, out=lines)


def _mouth(img, dark, u, v, k, px, mw, lift, g, p) -> None:
    """Lips around an opening between two parabolas that meet at the corners."""
    t = u / mw
    gm = 1 - t * t  # 1 mid-mouth, 0 at the corners
    c = _col(g["my"]) - lift * (1 - gm)
    gs = np.sqrt(np.maximum(gm, 0))
    ou, ol = _col(g["ou"]) * gm, _col(g["ol"]) * gm
    across = ramp(gm, k * mw * f32(0.5))
    lips = ramp(v - (c - ou - _col(g["lu"]) * gs), k) * ramp(c + ol + _col(g["ll"]) * gs - v, k) * across
    over(img, lips, p["lip"])
    gap = ramp(v - (c - ou), k) * ramp(c + ol - v, k) * across
    over(img, gap, p["lip"] * f32(0.25))
    teeth = gap * ramp(c - ou + f32(0.45) * (ou + ol) - v, k)
    over(img, teeth, np.broadcast_to(_WHITE * f32(0.95), p["lip"].shape))
    np.maximum(dark, band(v - c, px * f32(0.8), k) * across * f32(0.8), out=dark)


def _front_hair(img, up, v, k, face_px, g, p) -> None:
    """Hair over the forehead down to a curved hairline centred on the turned face.

    The mask reaches one pixel past the skin rim so no anti-aliased skin ring shows through.
    """
    uh = up - _col(g["fa"] * f32(1.05) * np.sin(g["yaw"]))  # projected face midline
    line = _col(p["hairline"]) + f32(0.35) * uh * uh
    over(img, ramp(line - v, k) * np.clip(face_px + f32(1.5), 0, 1), p["hair"])


def _glasses(img: list[Arr], w: Window, g: dict[str, Arr], p: dict[str, Arr]) -> None:
    """Frames (rings, bridge, temples) and tinted lenses around both eyes."""
    ua, v, k = np.abs(w.u), w.v, w.k
    px = f32(0.6) / k
    ex, ey, ew = _col(g["ex"]), _col(g["ey"] + f32(0.01)), _col(g["ew"])
    rx, ry = ew + f32(0.07), f32(0.15)
    dx, dy = (ua - ex) / rx, (v - ey) / ry
    q = dx * dx + dy * dy
    on = _col(p["glasses"])
    lens = ramp((1 - q) * f32(0.5), k * ry) * on
    over(img, lens * _col(p["lens_a"]), p["frame"] * f32(0.5))
    half = np.maximum(f32(0.016), px)
    ring = band((q - 1) * ry * f32(0.5), half, k)
    bar_y = v - ey + ry * f32(0.45)
    bridge = band(bar_y, half, k) * ramp(ex - rx - ua + f32(0.02), k)
    temple = band(bar_y, half, k) * ramp(ua - ex - rx + f32(0.02), k) * ramp(_col(g["fa"]) - ua, k)
    over(img, np.maximum(np.maximum(ring, bridge), temple) * on, p["frame"])


def _finish(img: list[Arr], p: dict[str, Arr], size: int, bank: Arr) -> Arr:
    """Occluder, lighting gradient, blur, sensor noise, 8-bit quantisation."""
    _on_subset(img, p["occ_a"], lambda crop, idx: _occluder(crop, {k: p[k][idx] for k in _OCC_KEYS}, size))
    xs, ys = _unit_grid(size)
    light = (f32(1) + (xs - f32(0.5)) * _col(p["light_x"]) + (ys - f32(0.5)) * _col(p["light_y"])) * f32(255)
    blurred = np.flatnonzero(p["blur"])
    noise_sd = p["noise_sd"] * f32(255)
    out = np.empty((len(light), size, size, 3), np.uint8)
    for c in range(3):
        ch = img[c] * light
        if blurred.size:
            part = ch[blurred]
            part += _col(p["blur"][blurred]) * (_box3(part) - part)
            ch[blurred] = part
        for i in range(len(ch)):  # per-face crop of the shared noise bank: cheap, chunk-independent
            oy, ox = int(p["noise_oy"][i]), int(p["noise_ox"][i])
            ch[i] += bank[oy:oy + size, ox:ox + size, c] * noise_sd[i]
        ch += f32(0.5)
        out[..., c] = np.clip(ch, 0, 255)
    return out


_OCC_KEYS = ("occ_a", "occ_x", "occ_y", "occ_w", "occ_h", "occ_ang", "occ_rgb")


def _occluder(img: list[Arr], q: dict[str, Arr], size: int) -> None:
    """A rotated bar or patch in image coordinates (hand, hair strand, object)."""
    xs, ys = _unit_grid(size)
    ca, sa = _col(np.cos(q["occ_ang"])), _col(np.sin(q["occ_ang"]))
    dx, dy = xs - _col(q["occ_x"]), ys - _col(q["occ_y"])
    occ = ramp(_col(q["occ_w"]) - np.abs(dx * ca + dy * sa), f32(size))
    occ *= ramp(_col(q["occ_h"]) - np.abs(dy * ca - dx * sa), f32(size))
    over(img, occ * _col(q["occ_a"]), q["occ_rgb"])


def _box3(x: Arr) -> Arr:
    """[1, 2, 1] / 4 separable blur with edge replication, ``[n, S, S]``."""
    y = x * f32(2)
    y[:, 1:] += x[:, :-1]
    y[:, :-1] += x[:, 1:]
    y[:, 0] += x[:, 0]
    y[:, -1] += x[:, -1]
    z = y * f32(2)
    z[:, :, 1:] += y[:, :, :-1]
    z[:, :, :-1] += y[:, :, 1:]
    z[:, :, 0] += y[:, :, 0]
    z[:, :, -1] += y[:, :, -1]
    return z * f32(1 / 16)
