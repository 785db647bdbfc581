"""The run report in a real browser: time ``write_report`` and render the page in headless Chromium.

For a run folder (or, without ``--run``, a small demo run trained here first) it

1. writes the report (``facemtl report``) and times it, with and without re-predicting the
   test split;
2. renders ``report.html`` to a full-page screenshot with ``chromium --headless
   --screenshot`` and checks what a reader would see: the page is not blank, every ``<img>``
   was decoded (the test split's orange, used only inside the plots, is on screen), and
   the screenshot is as tall as the page's content;
3. prints a table (``--json PATH`` also writes it).

Chromium is Debian's ``chromium`` package (``apt-get install chromium``); without it the
rendering rows say "skipped" and the script still times the report.

    python benchmarks/report_render.py [--run RUN_DIR | --quick] [--max-faces 2000] [--shot page.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facemtl.report.html import write_report

#: A demo-like run that trains in about a minute on one CPU thread.
QUICK_RUN = [
    "data.num_train=1024", "data.num_val=256", "data.num_test=512", "data.image_size=48",
    "model.backbone=test_tiny", "train.epochs=4", "train.batch_size=64", "train.progress=false",
    "train.threads=1",
]
#: ``--quick``: the unit tests' tiny run (seconds to train).
TINY_RUN = [
    "data.num_train=128", "data.num_val=64", "data.num_test=64", "data.image_size=32",
    "model.backbone=test_tiny", "train.epochs=2", "train.batch_size=32", "train.progress=false",
    "train.warmup_epochs=0", "train.threads=1",
]
ORANGE = np.array([0xDD, 0x84, 0x52])  # plots.SPLIT_COLOURS["test"]


def chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(page: Path, shot: Path, width: int = 1200, height: int = 8000) -> float:
    """Screenshot ``page`` with headless Chromium; returns the seconds it took."""
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={profile}", f"--window-size={width},{height}",
                   f"--screenshot={shot}", page.resolve().as_uri()]
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, timeout=180, check=True)
        return time.perf_counter() - started


def inspect(shot: Path) -> dict[str, float]:
    """What the screenshot shows: ink (dark pixels), plot colour, and where the content ends."""
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    rows = np.flatnonzero((pixels.sum(axis=2) < 3 * 250).any(axis=1))
    content = pixels[: rows[-1] + 1] if rows.size else pixels[:1]  # fractions over the page, not the empty window below
    return {
        "ink_fraction": float((content.sum(axis=2) < 600).mean()),
        "plot_colour_fraction": float((np.abs(content - ORANGE).sum(axis=2) < 30).mean()),
        "content_height_px": int(rows[-1] + 1) if rows.size else 0,
        "shot_height_px": int(pixels.shape[0]),
    }


def train_run(folder: Path, overrides: list[str]) -> Path:
    from facemtl.config import load_config
    from facemtl.engine import Trainer

    run = folder / "run"
    Trainer(load_config(None, overrides), run).fit()
    return run


def measure(run: Path, max_faces: int, shot: Path | None) -> list[dict]:
    rows = []
    for predictions in (False, True):
        started, cpu = time.perf_counter(), time.process_time()
        page = write_report(run, predictions=predictions, max_faces=max_faces)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        row = {"predictions": predictions, "report_s": round(seconds, 2), "report_cpu_s": round(cpu, 2),
               "pngs": page.read_text().count("<img "), "html_kb": round(page.stat().st_size / 1024, 1)}
        if chromium() is None:
            row["render"] = "skipped (no chromium)"
        else:
            target = shot if (shot and predictions) else page.parent / "_screenshot.png"
            row["render_s"] = round(render(page, target), 2)
            row.update(inspect(target))
            drawn = row["ink_fraction"] > 0.02 and row["plot_colour_fraction"] > 0.002
            whole = row["content_height_px"] < row["shot_height_px"] - 1
            row["render"] = "ok" if drawn and whole else ("BLANK?" if not drawn else "truncated: raise height")
            if target != shot:
                target.unlink()
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    columns = ["predictions", "report_s", "report_cpu_s", "pngs", "html_kb", "render_s", "ink_fraction",
               "plot_colour_fraction", "content_height_px", "render"]
    widths = [max(len(c), 8) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        cells = [row.get(c, "-") for c in columns]
        print("  ".join((f"{c:.4g}" if isinstance(c, float) else str(c)).rjust(w) for c, w in zip(cells, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="finished run folder (default: train a small demo run first)")
    parser.add_argument("--quick", action="store_true", help="without --run: train the unit tests' tiny run instead")
    parser.add_argument("--max-faces", type=int, default=2000)
    parser.add_argument("--shot", help="keep the screenshot of the full report here")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        overrides = TINY_RUN if args.quick else QUICK_RUN
        run = Path(args.run) if args.run else train_run(Path(folder), overrides)
        rows = measure(run, args.max_faces, Path(args.shot) if args.shot else None)
    print(f"run: {args.run or 'trained here: ' + ' '.join(overrides)}")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
