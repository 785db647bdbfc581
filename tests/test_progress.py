"""Progress bars off a terminal: a few plain lines (or none), never a redraw per item."""

import io

import numpy as np
import pytest

from facemtl.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_per_ten_percent_off_a_terminal():
    stream = io.StringIO()
    bar = progress_bar(range(250), desc="predict", unit="frame", stream=stream)
    assert isinstance(bar, LineProgress)
    for step, _ in enumerate(bar):
        bar.set_postfix(loss=f"{step:.1f}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[0].startswith("predict: 25/250 frames (10 %), ") and lines[-1].startswith("predict: 250/250 frames (100 %)")
    assert lines[-1].endswith("loss=249.0")  # set in the body, before the bar counts the item (as tqdm)


def test_no_lines_when_the_caller_prints_its_own_or_hides_progress():
    stream = io.StringIO()
    for options in ({"lines": False}, {"show": False}):
        bar = progress_bar(range(50), stream=stream, **options)
        assert sum(1 for _ in bar) == 50
        bar.set_postfix(loss="1")
        bar.close()
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_live_bar():
    from tqdm import tqdm

    bar = progress_bar(total=3, stream=_Terminal())
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


@pytest.mark.parametrize(("total", "updates", "lines"), [
    (None, 1000, 10),  # unknown total: 1, 2, 5, 10, ..., 500, 1000
    (10, 25, 12),  # a video longer than its frame count said: 1..10, then 20, then close at 25
    (3, 3, 3),
])
def test_line_count_stays_small(total, updates, lines):
    stream = io.StringIO()
    bar = LineProgress(total=total, unit="frame", stream=stream)
    for _ in range(updates):
        bar.update()
    bar.close()
    assert len(stream.getvalue().splitlines()) == lines


def test_training_log_has_one_line_per_epoch(tmp_path, tiny_overrides, capsys):
    from facemtl.config import load_config
    from facemtl.engine import Trainer

    Trainer(load_config(None, [*tiny_overrides, "train.progress=true"]), tmp_path / "run").fit()
    captured = capsys.readouterr()
    assert captured.err == ""  # no bar redraws in a redirected stderr
    assert [line.split()[:2] for line in captured.out.splitlines()] == [["epoch", "1/2"], ["epoch", "2/2"]]


def test_predict_prints_a_line_per_ten_percent_of_frames(tmp_path, capsys):
    from PIL import Image
    from test_predict import make_checkpoint

    from facemtl import FaceAnalyzer

    rng = np.random.default_rng(0)
    (tmp_path / "faces").mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "faces" / f"{i:02d}.png")
    analyzer = FaceAnalyzer(make_checkpoint(tmp_path / "tiny.safetensors"), detector="none", batch_size=4)
    rows = [row for batch in analyzer.iter_rows(str(tmp_path / "faces"), progress=True) for row in batch]
    assert len(rows) == 20
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("predict: 20/20 frames (100 %)")
