"""RAF-DB basic emotions, as released (``data.name=rafdb``).

Layout under ``data.root``::

    EmoLabel/list_patition_label.txt     # "train_00001.jpg 5" per line (the misspelling is official)
    Image/aligned/train_00001_aligned.jpg

Labels: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral, mapped
to facemtl's AffectNet order (neutral 0, happiness 1, sadness 2, surprise 3, fear 4,
disgust 5, anger 6) by :data:`RAFDB_TO_AFFECTNET`. Splits by file-name prefix: ``train_*``
-> train (12,271 faces), ``test_*`` -> test (3,068); validation is a seeded
``data.val_fraction`` of train. Images are the official aligned 100x100 faces, used whole.
"""

from __future__ import annotations

from facemtl.config import DataConfig
from facemtl.data.formats._common import dataset_root, find_dir, find_file, read_lines
from facemtl.data.record_dataset import build_splits
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.registry import DATASETS

#: RAF-DB label 1..7 (index label - 1) -> AffectNet-order class.
RAFDB_TO_AFFECTNET: tuple[int, ...] = (3, 4, 5, 1, 2, 6, 0)


@DATASETS.register("rafdb")
def rafdb(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """RAF-DB basic: expression only (7 classes; none is contempt)."""
    root = dataset_root(config, "RAF-DB", "EmoLabel/list_patition_label.txt and Image/aligned/")
    label_file = find_file(root, ["EmoLabel/list_patition_label.txt", "list_patition_label.txt"], "RAF-DB label list")
    image_dir = find_dir(root, ["Image/aligned", "aligned"]).relative_to(root)
    table = RecordTable(dataset_label_spaces(config), root)
    lines, paths, split, expr = [], [], [], []
    for number, line in enumerate(read_lines(label_file), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label_file}:{number}"
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
            problem(where, f"expected '<name>.jpg <label 1-7>', got {line.strip()!r}")
            continue
        name = parts[0]
        prefix = name.split("_", 1)[0]
        if prefix not in ("train", "test"):
            problem(where, f"file name {name!r} starts with neither 'train' nor 'test'")
            continue
        stem = name.rsplit(".", 1)[0]
        lines.append(number)
        paths.append(str(image_dir / f"{stem}_aligned.jpg"))
        split.append(prefix)
        expr.append(RAFDB_TO_AFFECTNET[int(parts[1]) - 1])
    table.extend(label_file, lines, paths, split, expr=expr)
    return build_splits(table.build(), config, splits)
