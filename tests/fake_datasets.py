"""Tiny fake datasets written in each benchmark's exact release format (torchvision's
``inject_fake_data`` idea): a few small images plus annotation files, so every loader is
tested on the real file layout without the licensed data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, height: int = 24, width: int = 24, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A random image file (grey, BGR or BGRA by ``channels``); returns the array written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if channels == 1 else (height, width, channels)
    image = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return image


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rafdb(root: Path, labels: dict[str, int]) -> Path:
    """``EmoLabel/list_patition_label.txt`` + ``Image/aligned/<stem>_aligned.jpg`` (RAF labels 1-7)."""
    for i, name in enumerate(labels):
        write_image(root / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg", 30, 30, seed=i)
    return write_lines(root / "EmoLabel" / "list_patition_label.txt", [f"{n} {v}" for n, v in labels.items()])


AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def affectnet_row(name: str, expression: int, valence: float = 0.5, arousal: float = -0.25,
                  box: tuple[int, int, int, int] = (10, 10, 40, 40)) -> str:
    """One training.csv row; landmarks on a grid inside the box."""
    x, y, w, h = box
    points = [(x + w * (0.1 + 0.8 * (i % 8) / 7), y + h * (0.1 + 0.8 * (i // 8) / 8)) for i in range(68)]
    landmarks = ";".join(f"{px:.2f};{py:.2f}" for px, py in points)
    return f"{name},{x},{y},{w},{h},{landmarks},{expression},{valence},{arousal}"


def write_affectnet(root: Path, train: Sequence[str], validation: Sequence[str], images: Sequence[str]) -> None:
    """``Manually_Annotated_file_lists/{training,validation}.csv`` + 64x64 images."""
    lists = root / "Manually_Annotated_file_lists"
    write_lines(lists / "training.csv", [AFFECTNET_HEADER, *train])
    write_lines(lists / "validation.csv", [AFFECTNET_HEADER, *validation])
    for i, name in enumerate(images):
        write_image(root / "Manually_Annotated_Images" / name, 64, 64, seed=i)


def fer_pixels(seed: int) -> str:
    return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 256, 48 * 48))


def write_fer2013_csv(root: Path, rows: Sequence[tuple[int, str]]) -> Path:
    """``fer2013.csv``: (emotion, Usage) rows with random 48x48 pixels."""
    lines = ["emotion,pixels,Usage", *(f'{e},"{fer_pixels(i)}",{u}' for i, (e, u) in enumerate(rows))]
    return write_lines(root / "fer2013.csv", lines)


def write_fer2013_folders(root: Path, files: Sequence[str]) -> None:
    """Folder-per-class export: ``train/<class>/Training_<id>.jpg``, ``test/<class>/PublicTest_<id>.jpg``..."""
    for i, rel in enumerate(files):
        write_image(root / rel, 48, 48, channels=1, seed=i)


FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def write_ferplus(root: Path, rows: Sequence[tuple[str, str, Sequence[int]]]) -> None:
    """``fer2013new.csv`` (usage, image name, 10 votes) + a row-aligned ``fer2013.csv``."""
    write_lines(root / "fer2013new.csv", [FERPLUS_HEADER, *(f"{u},{n},{','.join(map(str, v))}" for u, n, v in rows)])
    write_fer2013_csv(root, [(0, u) for u, _, _ in rows])


def write_expw(root: Path, faces: Sequence[tuple[str, int, int, int, int, int]]) -> None:
    """``label/label.lst`` lines ``name face_id top left right bottom confidence label`` + 80x80 images."""
    lines = [f"{n} {i} {t} {lf} {r} {b} 57.1 {lab}" for i, (n, t, lf, r, b, lab) in enumerate(faces)]
    write_lines(root / "label" / "label.lst", lines)
    for i, name in enumerate(sorted({f[0] for f in faces})):
        write_image(root / "image" / "origin" / name, 80, 80, seed=i)


def write_bp4d(root: Path, sequences: dict[str, list[list[int]]], aus: Sequence[int] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24, 99)) -> None:
    """``AUCoding/AU_OCC/<subject>_<task>.csv`` (frame column + AU columns) + frames ``<s>/<t>/<frame:04d>.jpg``."""
    for key, rows in sequences.items():
        subject, task = key.split("_")
        lines = [",".join(["0", *map(str, aus)])]
        for k, values in enumerate(rows):
            frame = 100 + k
            lines.append(",".join([str(frame), *map(str, values)]))
            write_image(root / subject / task / f"{frame:04d}.jpg", 20, 20, seed=k)
        write_lines(root / "AUCoding" / "AU_OCC" / f"{key}.csv", lines)


def write_disfa(root: Path, subjects: dict[str, dict[int, list[int]]]) -> None:
    """``ActionUnit_Labels/SNxxx/SNxxx_au<N>.txt`` ("frame,intensity") + frames ``img/SNxxx/<index>.png``."""
    for subject, per_au in subjects.items():
        for au, intensities in per_au.items():
            lines = [f"{k + 1},{v}" for k, v in enumerate(intensities)]
            write_lines(root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt", lines)
        frames = max(len(v) for v in per_au.values())
        for k in range(frames):
            write_image(root / "img" / subject / f"{k}.png", 20, 20, seed=k)


def write_affwild2_set(root: Path, kind: str, split_folder: str, video: str, header: str, lines: Sequence[str]) -> None:
    """``annotations/<kind>_Set/<split>/<video>.txt`` (header + one line per frame)."""
    write_lines(root / "annotations" / f"{kind}_Set" / split_folder / f"{video}.txt", [header, *lines])


def write_affwild2_frames(root: Path, video: str, frames: Sequence[int]) -> None:
    for frame in frames:
        write_image(root / "cropped_aligned" / video / f"{frame:05d}.jpg", 16, 16, seed=frame)


def write_pts(path: Path, points: np.ndarray, header: bool = True) -> None:
    body = [f"{x:.3f} {y:.3f}" for x, y in points]
    write_lines(path, ["version: 1", f"n_points: {len(points)}", "{", *body, "}"] if header else body)


def face_points(cx: float, cy: float, scale: float, count: int = 68) -> np.ndarray:
    """``count`` points spread around a face centre (a fake but well-formed 68-point shape)."""
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    radius = scale * (0.5 + 0.5 * (np.arange(count) % 2))
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)


def write_dlib_xml(path: Path, images: dict[str, list[tuple[int, int, int, int, np.ndarray | None]]]) -> None:
    """imglab XML: per image, boxes (top, left, width, height, points or None)."""
    lines = ["<?xml version='1.0' encoding='ISO-8859-1'?>", "<dataset>", "<images>"]
    for name, boxes in images.items():
        write_image(path.parent / name, 100, 120)
        lines.append(f"  <image file='{name}' width='120' height='100'>")
        for top, left, width, height, points in boxes:
            lines.append(f"    <box top='{top}' left='{left}' width='{width}' height='{height}'>")
            for k, (x, y) in enumerate([] if points is None else points):
                lines.append(f"      <part name='{k:02d}' x='{round(float(x))}' y='{round(float(y))}'/>")
            lines.append("    </box>")
        lines.append("  </image>")
    write_lines(path, [*lines, "</images>", "</dataset>"])
