"""``facemtl data check RECIPE``: load a recipe's datasets and report what is in them.

Prints, per split: face counts (and per source for a mix), labelled faces and masked
fractions per task, the expression class distribution, AU positive rates, valence/arousal
statistics and attribute distributions; then every malformed annotation line and every
unreadable image (``file:line`` / path), collected without stopping at the first.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from facemtl.config import DataConfig, load_config
from facemtl.data.dataset import FaceDataset
from facemtl.data.images import read_image
from facemtl.data.mix import MixedDataset, MixOptions
from facemtl.data.record_dataset import RecordDataset
from facemtl.data.records import SPLITS, collect_report
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS


def _lazy(config: DataConfig) -> DataConfig:
    """The same data config, decoding nothing up front (the check reads each image once itself)."""
    options = config.options
    if isinstance(options, MixOptions):
        options = dataclasses.replace(options, sources=[{**s, "load": "lazy"} for s in options.sources])
    return dataclasses.replace(config, load="lazy", options=options)


def _record_sets(dataset: FaceDataset) -> Iterable[RecordDataset]:
    if isinstance(dataset, RecordDataset):
        yield dataset
    elif isinstance(dataset, MixedDataset):
        for part in dataset.parts:
            yield from _record_sets(part)


def unreadable_images(datasets: dict[str, FaceDataset], progress: bool = True) -> list[str]:
    """Every image of every split that cannot be decoded, with the line that lists it."""
    jobs, seen = [], set()
    for dataset in datasets.values():
        for part in _record_sets(dataset):
            records = part.records
            if records.pixels is not None:
                continue
            for i in range(len(records)):
                path = records.path(i)
                if path not in seen:
                    seen.add(path)
                    jobs.append((path, records, i))

    def check(job: tuple) -> str | None:
        path, records, i = job
        try:
            read_image(path)
        except FacemtlError as err:
            return f"{err} (listed at {records.where(i)})"
        return None

    if progress and jobs:
        print(f"reading {len(jobs)} images ...", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return [p for p in pool.map(check, jobs, chunksize=256) if p]


def _row(name: str, cells: list[str], width: int = 12) -> str:
    return f"  {name:<14}" + "".join(f"{c:>{width}}" for c in cells)


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else "-"


def _summary(datasets: dict[str, FaceDataset], out: TextIO) -> None:
    splits = [s for s in SPLITS if s in datasets]
    sets = [datasets[s] for s in splits]
    spaces = sets[0].label_spaces
    print(_row("split", splits), file=out)
    print(_row("faces", [str(len(d)) for d in sets]), file=out)
    for i, name in enumerate(getattr(sets[0], "names", [])):
        print(_row(f"  {name}", [str(d.composition()[name]) for d in sets]), file=out)
    print("labelled faces (share of the split; the rest are masked):", file=out)
    for task in ("expr", "au", "va", "lmk", "attr"):
        counts = [int(d.mask[task].reshape(len(d), -1).any(dim=1).sum()) if len(d) else 0 for d in sets]
        print(_row(task, [_share(c, len(d)) for c, d in zip(counts, sets)], 14), file=out)
    if any(bool(d.mask["expr"].any()) for d in sets):
        print("expression classes (share of labelled faces):", file=out)
        for c, name in enumerate(spaces.expr_classes):
            cells = [_share(int((d.labels["expr"][d.mask["expr"]] == c).sum()), int(d.mask["expr"].sum())) for d in sets]
            print(_row(name, cells, 14), file=out)
    if spaces.au_names:
        print("action units: positive rate among coded frames / masked share of entries:", file=out)
        for j, name in enumerate(spaces.au_names):
            cells = []
            for d in sets:
                coded = d.mask["au"][:, j]
                rate = f"{float(d.labels['au'][coded, j].mean()):.2f}" if bool(coded.any()) else "-"
                cells.append(f"{rate} / {1 - float(coded.float().mean()):.2f}" if len(d) else "-")
            print(_row(name, cells, 14), file=out)
    if any(bool(d.mask["va"].any()) for d in sets):
        print("valence / arousal: mean ± std [min, max] over labelled faces:", file=out)
        for k, name in enumerate(("valence", "arousal")):
            cells = []
            for d in sets:
                v = d.labels["va"][d.mask["va"], k].numpy()
                cells.append(f"{v.mean():+.2f}±{v.std():.2f} [{v.min():+.1f},{v.max():+.1f}]" if v.size else "-")
            print(_row(name, cells, 26), file=out)
    if any(bool(d.mask["attr"].any()) for d in sets):
        print("attributes (share of labelled faces per class):", file=out)
        for j, (name, classes) in enumerate(spaces.attributes.items()):
            for c, cls in enumerate(classes):
                cells = [_share(int((d.labels["attr"][d.mask["attr"][:, j], j] == c).sum()), int(d.mask["attr"][:, j].sum()))
                         for d in sets]
                print(_row(f"{name}={cls}"[:14], cells, 14), file=out)


def run_check(recipe: str | None, overrides: list[str], images: bool = True, out: TextIO | None = None) -> int:
    """Run the check; returns the number of problems found (0 = clean).

    Args:
        recipe: YAML recipe path (None: the defaults plus ``overrides``).
        overrides: ``section.key=value`` strings.
        images: decode every image to find unreadable ones (slow on very large datasets).
        out: where the report goes (default: the current ``sys.stdout``, looked up at call time).
    """
    out = out if out is not None else sys.stdout
    config = load_config(recipe, overrides)
    data = _lazy(config.data)
    with collect_report() as report:
        datasets = DATASETS.get(data.name)(data, SPLITS)
    problems = list(report.problems)
    if images:
        problems += unreadable_images(datasets)
    where = f" (data.root={data.root})" if data.root else ""
    print(f"data check: data.name={data.name}{where}, image_size={data.image_size}", file=out)
    _summary(datasets, out)
    for line in report.notes:
        print(f"note: {line}", file=out)
    if problems:
        print(f"{len(problems)} problem(s):", file=out)
        for line in problems:
            print(f"  {line}", file=out)
    else:
        checked = "annotations and images" if images else "annotations (images not read: --no-images)"
        print(f"no problems: {checked} are readable", file=out)
    return len(problems)
