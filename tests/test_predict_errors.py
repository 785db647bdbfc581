"""`facemtl predict` as a new user meets it: mistakes are one line before anything loads,
a run where every input failed says so in its exit status, and FFmpeg speaks once per bad video.

The mistakes must be caught before the model loads: ``FaceAnalyzer`` is replaced by one that
fails the test if it is ever built. Runs as root, so unwritable places are ones no permission
bit can open: a path under a regular file, ``/proc`` and ``/sys``.
"""

import re
from pathlib import Path

import pytest

from facemtl.cli import main

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
PHOTO = MEDIA / "single_face.jpg"


@pytest.fixture
def photo(tmp_path) -> Path:
    """Any existing input: the checks under test never read it."""
    if PHOTO.is_file():
        return PHOTO
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8 not read")
    return path


@pytest.fixture
def nothing_loads(monkeypatch):
    import facemtl.pipeline.analyzer

    class NoAnalyzer:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the model was loaded before the command line was checked")

    monkeypatch.setattr(facemtl.pipeline.analyzer, "FaceAnalyzer", NoAnalyzer)


def _one_line_error(capsys, *names: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("facemtl: error:"), captured
    for name in names:
        assert name in captured.err
    return captured.err


def _unwritable(tmp_path: Path) -> list[Path]:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    places = [blocker / "sub", Path("/proc/facemtl-test/sub")]  # /proc: root may not create files either
    if Path("/sys").is_dir():
        places.append(Path("/sys/facemtl-test"))
    return places


def test_unwritable_out_is_one_line_before_loading_and_writes_nothing(photo, tmp_path, nothing_loads, capsys):
    for place in _unwritable(tmp_path):
        out = place / "rows.csv"
        assert main(["predict", str(photo), "--out", str(out)]) == 2
        _one_line_error(capsys, "--out", str(out))
        assert not out.exists()
    assert main(["predict", str(photo), "--out", str(tmp_path)]) == 2  # a folder, not a CSV file
    _one_line_error(capsys, "is a folder")


def test_unwritable_annotate_is_one_line_before_loading_and_no_csv_is_created(photo, tmp_path, nothing_loads, capsys):
    out = tmp_path / "rows.csv"
    for place in [*_unwritable(tmp_path), tmp_path / "a_file"]:  # the last: exists, but is a file
        assert main(["predict", str(photo), "--out", str(out), "--annotate", str(place)]) == 2
        _one_line_error(capsys, "--annotate", str(place))
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no probe file or folder left behind


def test_missing_input_is_one_line_naming_it(photo, tmp_path, nothing_loads, capsys):
    missing = tmp_path / "typo.jpg"
    assert main(["predict", str(photo), str(missing), "--out", str(tmp_path / "rows.csv")]) == 2
    _one_line_error(capsys, str(missing))
    assert not (tmp_path / "rows.csv").exists()
    assert main(["predict", str(photo), "--every", "0"]) == 2  # bad numbers: also before loading
    _one_line_error(capsys, "--every")


def test_out_and_annotate_folders_that_do_not_exist_yet_are_fine(photo, tmp_path):
    """The checks leave creatable places alone (and create nothing themselves)."""
    import argparse

    from facemtl.pipeline.cli import check_arguments

    args = argparse.Namespace(inputs=[str(photo)], every=1, batch_size=1, out=str(tmp_path / "new" / "deep" / "rows.csv"),
                              annotate=str(tmp_path / "pictures"))
    check_arguments(args)
    assert list(tmp_path.iterdir()) == []


needs_media = pytest.mark.skipif(not PHOTO.is_file(), reason="shared media not available")


@needs_media
def test_every_input_failed_exits_1_with_its_rows_and_ffmpeg_speaks_once(tmp_path, monkeypatch, capfd):
    import cv2
    import pandas as pd
    from tiny_checkpoint import make_tiny_checkpoint

    from facemtl.pipeline import video

    monkeypatch.setenv("FACEMTL_CHECKPOINT", str(make_tiny_checkpoint(tmp_path / "tiny.safetensors")))
    monkeypatch.setattr(video, "_has_pyav", lambda: False)  # OpenCV's FFmpeg, whose log goes to stderr
    opened, capture = [], cv2.VideoCapture

    def counting_capture(path, *args):
        opened.append(Path(path).name)
        return capture(path, *args)

    monkeypatch.setattr(cv2, "VideoCapture", counting_capture)
    bad_video, bad_image = tmp_path / "broken.mp4", tmp_path / "broken.jpg"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    bad_image.write_bytes(b"\xff\xd8\xff\xe0 garbage" * 50)
    out = tmp_path / "rows.csv"
    assert main(["predict", str(bad_video), str(bad_image), "--out", str(out), "--detector", "haar"]) == 1
    rows = pd.read_csv(out)
    assert len(rows) == 2 and (rows.success == 0).all() and rows.error.str.len().gt(5).all()
    assert opened.count("broken.mp4") == 1  # opened once: FFmpeg's own complaint is printed once
    err = capfd.readouterr().err
    assert err.count("broken.mp4: cannot open video") == 1
    native = [re.sub(r" @ 0x[0-9a-f]+", "", line) for line in err.splitlines() if line.startswith("[")]
    assert len(native) == len(set(native)), err
    assert "every input failed" in err and "2 of 2 inputs could not be read" in err
    assert "\r" not in err  # progress off a terminal: plain lines (facemtl.progress), no redraws

    # one readable input among failed ones: exit 0, the failures counted
    assert main(["predict", str(bad_image), str(PHOTO), "--out", str(out), "--detector", "haar"]) == 0
    assert "1 of 2 inputs could not be read" in capfd.readouterr().err
    assert pd.read_csv(out).success.tolist() == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg", "broken.mp4", "rows.csv", "tiny.safetensors"]


def test_help_states_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0" in text and "1 every input failed" in text and "2 a user error" in text
