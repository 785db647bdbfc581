"""Small parsing helpers shared by the format modules: roots, files, lines, numbers; and
the options (``data.<name>`` keys) several formats share."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from facemtl.config import DataConfig, DatasetOptions
from facemtl.data.records import collecting, problem
from facemtl.errors import FacemtlError


@dataclass
class AUOptions(DatasetOptions):
    """``data.<name>.au_ids`` of the formats labelling action units (csv, affwild2_mtl, and below)."""

    au_ids: list[int] = field(default_factory=list)  # FACS numbers of the AUs to label; empty = the dataset's standard set
    moved: ClassVar[dict[str, str]] = {"au_ids": "au_ids"}

    def check(self, data: DataConfig) -> None:
        bad = [a for a in self.au_ids if a < 1]
        if bad:
            raise FacemtlError(f"data.{data.name}.au_ids: {bad[0]} is not a FACS AU number (1 or more)")


@dataclass
class FoldOptions(AUOptions):
    """BP4D / DISFA: the 3-fold subject-exclusive protocol and where the frames are."""

    fold: int = 1  # 3-fold subject-exclusive protocol: fold k tests on part 4 - k
    image_template: str = ""  # frame paths, e.g. "{subject}/{task}/{frame:04d}.jpg"; empty = auto-detect
    moved: ClassVar[dict[str, str]] = {**AUOptions.moved, "fold": "fold", "image_template": "image_template"}

    def check(self, data: DataConfig) -> None:
        super().check(data)
        if self.fold not in (1, 2, 3):
            raise FacemtlError(f"data.{data.name}.fold={self.fold}; expected 1, 2 or 3")


def dataset_root(config: DataConfig, dataset: str, layout: str) -> Path:
    """``data.root`` as a folder, with an error that says what the folder should hold.

    Args:
        config: the data config.
        dataset: human name, e.g. "RAF-DB".
        layout: what the folder holds, e.g. "EmoLabel/list_patition_label.txt and Image/aligned/".
    """
    if not config.root:
        raise FacemtlError(f"data.root is empty; set it to the {dataset} folder (holding {layout})")
    root = Path(config.root).expanduser()
    if not root.exists():
        raise FacemtlError(f"data.root={config.root}: no such folder (expected the {dataset} folder holding {layout})")
    return root


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` (relative to ``root``) that exists, else a clear error."""
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise FacemtlError(f"{root}: no {what} found; expected one of: {', '.join(candidates)}")


def find_dir(root: Path, candidates: Sequence[str]) -> Path:
    """The first existing folder of ``candidates`` relative to ``root`` (``root`` itself if none)."""
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    return root


def read_lines(path: Path) -> list[str]:
    """A text file's lines without line endings (UTF-8, BOM tolerated; Latin-1 fallback)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # annotation files from Windows tools are sometimes cp1252
        text = raw.decode("latin-1")
    return text.splitlines()


def csv_rows(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for each data row of a headed CSV; the header must hold ``required``.

    Raises:
        FacemtlError: ``file:1`` when a required column is missing.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise FacemtlError(f"{path}:1: missing column(s) {', '.join(missing)}; header is {','.join(header)}")
        reader.fieldnames = header
        for row in reader:
            yield reader.line_num, row


#: Column names of a face-box CSV: ``facemtl predict``'s own, or plain ``path,x,y,w,h``.
BOX_COLUMNS: tuple[tuple[str, ...], ...] = (("input", "face_x", "face_y", "face_w", "face_h"), ("path", "x", "y", "w", "h"))


def read_face_boxes(
    path: str | Path, root: Path, key: str = "data.mtfl.boxes"
) -> dict[str, list[tuple[float, float, float, float]]]:
    """Detected face boxes per image from a CSV: ``facemtl predict`` output or ``path,x,y,w,h``.

    Rows of a ``facemtl predict`` CSV with ``success = 0`` (no face) are skipped. Image paths
    may be absolute, relative to ``root``, or relative to the working folder (as ``facemtl
    predict`` writes the paths it was given); keys are resolved absolute paths.

    Args:
        path: the CSV file.
        root: the dataset folder relative image paths may start from.
        key: the config key naming the file, for the error.

    Raises:
        FacemtlError: ``file:line`` for a missing file, an unknown header or a non-numeric box.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FacemtlError(f"{key}={path}: no such file (expected a CSV from `facemtl predict` or path,x,y,w,h)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = [h.strip() for h in next(csv.reader(handle), [])]
    names = next((cols for cols in BOX_COLUMNS if set(cols) <= set(header)), None)
    if names is None:
        raise FacemtlError(f"{path}:1: expected columns {' or '.join(','.join(c) for c in BOX_COLUMNS)}; "
                           f"header is {','.join(header)}")
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for line, row in csv_rows(path, names):
        if row.get("success", "1").strip() == "0":
            continue
        try:
            box = tuple(to_float(row[c]) for c in names[1:])
        except ValueError as err:
            raise FacemtlError(f"{path}:{line}: face box {names[1:]} must be numbers ({err})") from None
        image = Path(row[names[0]].strip().replace("\\", "/")).expanduser()
        # relative to root, or (as `facemtl predict` writes them) to where the command ran
        image = root / image if (root / image).exists() or not image.exists() else image
        boxes.setdefault(str(image.resolve()), []).append(box)
    return boxes


def to_float(text: str | None) -> float:
    """A float from annotation text; ValueError when it is not one."""
    if text is None:
        raise ValueError("missing value")
    return float(text.strip())


def to_int(text: str | None) -> int:
    """An integer from annotation text ("3", "3.0"); ValueError otherwise."""
    value = to_float(text)
    if value != int(value):
        raise ValueError(f"{text!r} is not an integer")
    return int(value)


def au_ids(config: DataConfig, default: Sequence[int], available: Sequence[int] | None = None, where: str = "") -> list[int]:
    """The AUs to label: ``data.<name>.au_ids`` if set (each must be annotated), else the dataset's standard set."""
    chosen = list(AUOptions.of(config).au_ids) or list(default)
    if available is not None:
        missing = [a for a in chosen if a not in available]
        if missing:
            raise FacemtlError(
                f"data.{config.name}.au_ids: AU {', '.join(map(str, missing))} not annotated in {where or 'this dataset'}; "
                f"available: {', '.join(map(str, available))}"
            )
    return chosen


def au_number(name: str) -> int | None:
    """FACS number from a column name such as ``AU12``, ``au12``, ``12`` or ``AU12_c``; None otherwise."""
    match = re.fullmatch(r"(?:au)?0*(\d+)(?:_[a-z]+)?", name.strip().lower())
    return int(match.group(1)) if match else None


def resolve_template(root: Path, template: str, candidates: Sequence[str], example: dict, key: str) -> str:
    """The frame-path template to use: ``data.<name>.image_template`` or the first candidate whose example exists.

    Args:
        root: dataset folder the template is relative to.
        template: the user's ``data.<name>.image_template`` ("" = auto-detect).
        candidates: layouts tried in order.
        example: placeholder values of one annotated frame, to probe candidates with.
        key: the config key to name in the error.
    """
    if template:
        return template
    for candidate in candidates:
        if (root / candidate.format(**example)).is_file():
            return candidate
    tried = ", ".join(c.format(**example) for c in candidates)
    message = f"no frame image found for the first annotated frame (tried {tried}); set {key} to your layout"
    if not collecting():
        raise FacemtlError(f"{root}: {message}")
    problem(str(root), message)
    return candidates[0]


def fold_split(subject: str, parts: Sequence[Sequence[str]], fold: int, known: dict[str, int]) -> str:
    """``train`` or ``test`` of one subject under the 3-fold subject-exclusive protocol.

    ``fold`` k tests on part ``4 - k`` and trains on the other two (the convention of
    JAA-Net / ME-GraphAU list files, so per-fold numbers compare). Subjects missing from
    the standard parts are dealt round-robin into them in sorted order (``known`` keeps
    that assignment), so custom subsets still get subject-exclusive folds.
    """
    for index, part in enumerate(parts):
        if subject in part:
            return "test" if index == 3 - fold else "train"
    if subject not in known:
        known[subject] = len(known) % len(parts)
    return "test" if known[subject] == 3 - fold else "train"
