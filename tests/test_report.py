"""The HTML run report: `facemtl demo` writes it, `facemtl report` rewrites it, every picture is real."""

import contextlib
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from facemtl.cli import main
from facemtl.engine.evaluate import task_metrics
from facemtl.labels import LabelSpaces
from facemtl.report.html import load_run, predict_split, write_report


def _set(overrides):
    return [word for o in overrides for word in ("--set", o)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A tiny demo run (all five tasks) and what the demo printed."""
    from conftest import TINY

    run = tmp_path_factory.mktemp("report") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(run)] + _set(TINY)) == 0
    return run, printed.getvalue()


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_demo_writes_report_with_a_valid_png_per_plot(demo_run):
    run, printed = demo_run
    report = run / "report" / "report.html"
    assert f"report: {report}" in printed
    page = report.read_text()
    names = _images(page)
    expected = {"curves.png", "expr_confusion.png", "expr_f1.png", "au_f1.png", "va_scatter.png",
                "lmk_ced.png", "attr_accuracy.png", "predictions.png"}
    assert set(names) == expected
    for name in names:
        with Image.open(report.parent / name) as image:
            image.verify()  # a truncated or non-PNG file raises here
        with Image.open(report.parent / name) as image:
            assert image.format == "PNG" and min(image.size) >= 200
            assert np.asarray(image.convert("L")).std() > 5, f"{name} is blank"
    for section in ("summary", "metrics", "curves", "expr", "au", "va", "lmk", "attr", "grid"):
        assert f'<section id="{section}">' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained page
    assert "Plot skipped" not in page and "Grid skipped" not in page


def test_metrics_table_shows_the_runs_numbers(demo_run):
    run, _ = demo_run
    page = (run / "report" / "report.html").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert f'{metrics["test"]["expr"]["macro_f1"]:.4f}' in page
    assert f'{metrics["val"]["lmk"]["nme"]:.4f}' in page
    assert f'{metrics["test"]["attr"]["pose"]["accuracy"]:.4f}' in page


def test_predictions_reproduce_the_stored_test_metrics(demo_run):
    run, _ = demo_run
    data = load_run(run)
    preds = predict_split(data, "test", max_faces=10_000)
    assert preds.num_faces == preds.total_faces == 64
    spaces = LabelSpaces.from_json((run / "label_spaces.json").read_text())
    for task, arrays in preds.arrays.items():
        again = _flat(task_metrics(task, arrays["pred"], arrays["label"], arrays["mask"], spaces))
        stored = _flat(data.metrics["test"][task])
        assert again.keys() == stored.keys(), task
        for key, value in stored.items():
            np.testing.assert_allclose(again[key], value, atol=1e-5, err_msg=f"{task} {key}")


def _flat(results, prefix=""):
    """Nested metric dicts as ``{"a/b": array}`` for element-wise comparison."""
    if isinstance(results, dict):
        return {k: v for key, value in results.items() for k, v in _flat(value, f"{prefix}{key}/").items()}
    return {prefix: np.asarray(results, dtype=np.float64)}


def test_max_faces_takes_an_even_sample_and_says_so(demo_run, tmp_path):
    run, _ = demo_run
    preds = predict_split(load_run(run), "test", max_faces=10)
    assert preds.num_faces == 10 and preds.total_faces == 64
    assert len(preds.arrays["expr"]["pred"]) == 10
    out = tmp_path / "small"
    assert main(["report", str(run), "--out", str(out), "--max-faces", "10"]) == 0
    assert "10 evenly spaced of 64 test faces" in (out / "report.html").read_text()


def test_unavailable_data_skips_per_face_plots_with_a_note(demo_run, tmp_path):
    run, _ = demo_run
    out = tmp_path / "nodata"
    path = write_report(run, out, overrides=["data.name=rafdb", "data.root=/nonexistent/rafdb"])
    page = path.read_text()
    assert "the test split could not be predicted" in page and "/nonexistent/rafdb: no such folder" in page
    names = set(_images(page))
    assert {"curves.png", "expr_confusion.png", "au_f1.png", "attr_accuracy.png"} <= names
    assert not names & {"lmk_ced.png", "va_scatter.png", "predictions.png"}
    assert not (out / "lmk_ced.png").exists()
    assert '<section id="lmk">' in page and '<section id="va">' in page  # the task's section stays, with the note


def test_sections_only_for_the_runs_tasks(tmp_path, tiny_overrides):
    run = tmp_path / "expr_lmk"
    overrides = tiny_overrides + ["train.epochs=1", "model.tasks=[expr,lmk]"]
    from facemtl.config import load_config
    from facemtl.engine import Trainer

    Trainer(load_config(None, overrides), run).fit()
    page = write_report(run, predictions=False).read_text()
    assert '<section id="expr">' in page and '<section id="lmk">' in page
    for absent in ("au", "va", "attr"):
        assert f'<section id="{absent}">' not in page
    assert "--no-predictions was given" in page
    assert set(_images(page)) == {"curves.png", "expr_confusion.png", "expr_f1.png"}


@pytest.mark.parametrize("prepare, message", [
    (lambda run: None, "does not exist"),
    (lambda run: run.mkdir(), "no metrics.json; a report needs a finished run"),
    (lambda run: (run.mkdir(), (run / "metrics.json").write_text("{nope")), "metrics.json: not valid JSON"),
    (lambda run: (run.mkdir(), (run / "metrics.json").write_text("{}")), "expected a 'val' and/or 'test' entry"),
])
def test_bad_run_folder_is_a_one_line_error(tmp_path, capsys, prepare, message):
    run = tmp_path / "run"
    prepare(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_override_is_an_error_not_a_skipped_plot(demo_run, tmp_path, capsys):
    run, _ = demo_run
    assert main(["report", str(run), "--out", str(tmp_path / "x"), "--set", "data.rooot=/x"]) == 2
    assert "rooot" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_page_renders_in_headless_chromium(demo_run, tmp_path):
    run, _ = demo_run
    shot = tmp_path / "page.png"
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,7000",
               f"--screenshot={shot}", (run / "report" / "report.html").resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (7000, 1200)
    used = np.flatnonzero((pixels.sum(axis=2) < 750).any(axis=1))
    assert used.size and 3000 < used[-1] < 6900  # every section laid out, and the whole page in the shot
    content = pixels[: used[-1] + 1]
    assert (content.sum(axis=2) < 600).mean() > 0.02  # text and plots, not a blank page
    # The test split's orange (#dd8452) appears only inside the PNG plots: they were loaded and drawn.
    orange = (np.abs(content - np.array([0xDD, 0x84, 0x52])).sum(axis=2) < 30).mean()
    assert orange > 0.002


def test_report_of_a_checkpoint_file_evaluates_it(demo_run, tmp_path, monkeypatch):
    """A checkpoint (not a run folder) has no metrics.json: the report evaluates it, beside the user."""
    run, _ = demo_run
    checkpoint = run / "checkpoints" / "best.safetensors"
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(checkpoint), "--max-faces", "64"]) == 0
    page = (tmp_path / "best-report" / "report.html").read_text()
    stored = json.loads((run / "metrics.json").read_text())
    assert f"{stored['test']['expr']['accuracy']:.4f}" in page  # the same metrics as training wrote
    assert '<section id="lmk">' in page and "lmk_ced.png" in page
