"""Checkpoint and weight inputs: pickles are named and refused (never unpickled), ``facemtl_base`` is a name."""

import pathlib
import pickle
import shlex
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from facemtl.cli import main
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import BASE_NAME, load_checkpoint, refuse_pickle, resolve_checkpoint_path
from facemtl.weights import base_model


class _Trap:
    """Unpickling this touches ``marker``: proof that something unpickled the file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def trap(tmp_path) -> pathlib.Path:
    """A raw pickle named .pt that would run code if unpickled."""
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_Trap(tmp_path / "unpickled"), protocol=4))
    yield path
    assert not (tmp_path / "unpickled").exists(), "a pickle was unpickled"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("facemtl: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("name", "save", "kind"), [
    ("w.pt", lambda obj, path: torch.save(obj, path), "a torch.save zip archive"),
    ("w.safetensors", lambda obj, path: torch.save(obj, path), "a torch.save zip archive"),  # renamed: still a pickle
    ("w.pth", lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False), "a pickle"),
    ("w.bin", lambda obj, path: path.write_bytes(b"\x00" * 32), "a .bin file"),
])
def test_pickles_are_named_with_their_conversion(tmp_path, name, save, kind):
    path = tmp_path / name
    save({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(FacemtlError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path} is {kind}") and "will not unpickle" in message and "\n" not in message
    assert "torch.load(" in message and "weights_only=True" in message and "save_file(" in message
    assert message.rsplit("'", 2)[-2].endswith(".safetensors") and message.rsplit("'", 2)[-2] != str(path)  # not over itself


def test_the_conversion_line_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": {"w": torch.arange(3.0), "b": torch.ones(2)}}, tmp_path / "w.pt")
    with pytest.raises(FacemtlError) as err:
        refuse_pickle("w.pt", "model.pretrained=")  # as the user wrote it: relative to their folder
    assert str(err.value).startswith("model.pretrained=w.pt is ")
    command = str(err.value).split("convert its weights once with: ", 1)[1]
    subprocess.run(shlex.split(command), cwd=tmp_path, check=True)
    converted = load_file(tmp_path / "w.safetensors")
    assert torch.equal(converted["w"], torch.arange(3.0)) and torch.equal(converted["b"], torch.ones(2))


def test_safetensors_bytes_pass_whatever_the_suffix(tmp_path):
    save_file({"w": torch.ones(2)}, tmp_path / "w.bin")
    refuse_pickle(tmp_path / "w.bin")


def test_every_entry_point_refuses_a_pickle_without_unpickling_it(trap, tmp_path, capsys):
    from facemtl import FaceAnalyzer
    from facemtl.methods.distill import load_net
    from facemtl.models.backbone import create_backbone

    for argv in (["eval", "--checkpoint", str(trap)], ["export", "--checkpoint", str(trap), "--onnx", str(tmp_path / "x.onnx")],
                 ["predict", str(tmp_path), "--checkpoint", str(trap)]):
        assert main(argv) == 2
        assert f"{trap} is a pickle, which facemtl will not unpickle" in _one_line_error(capsys)
    with pytest.raises(FacemtlError, match=f"^model.pretrained={trap} is a pickle"):
        create_backbone("test_tiny", str(trap))
    with pytest.raises(FacemtlError, match="is a pickle"):
        load_net(str(trap))  # a distillation teacher
    with pytest.raises(FacemtlError, match="is a pickle"):
        FaceAnalyzer(trap)  # at construction, before any input is read


def test_facemtl_base_is_a_checkpoint_name(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    from facemtl import FaceAnalyzer

    assert resolve_checkpoint_path(BASE_NAME) == base_model()
    assert FaceAnalyzer(BASE_NAME).checkpoint_path == base_model()
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(tmp_path / "face.png")
    out = tmp_path / "rows.csv"
    assert main(["predict", str(tmp_path / "face.png"), "--checkpoint", BASE_NAME, "--no-detect", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2  # header + the face
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # where its training data (../shared/data/...) is absent
    assert main(["eval", "--checkpoint", BASE_NAME]) == 2
    err = _one_line_error(capsys)
    assert "facemtl_base: evaluating rebuilds the val and test splits" in err and "fer2013 at ../shared/data/fer2013" in err
    assert main(["report", BASE_NAME]) == 2  # a report of a checkpoint evaluates it: the same data is needed
    assert "facemtl_base: evaluating rebuilds the val and test splits" in _one_line_error(capsys)


def test_eval_does_not_read_the_training_time_pretrained_weights(tmp_path, tiny_overrides, capsys):
    """facemtl_base's config names model.pretrained=runs/fer_only, a folder only its trainer had."""
    from facemtl.config import load_config
    from facemtl.engine import Trainer

    config = load_config(None, [*tiny_overrides, "train.epochs=1", "model.tasks=expr"])
    Trainer(config, tmp_path / "source").fit()
    config = load_config(None, [*tiny_overrides, "train.epochs=1", "model.tasks=expr",
                                f"model.pretrained={tmp_path / 'source'}"])
    Trainer(config, tmp_path / "run").fit()
    (tmp_path / "source" / "checkpoints" / "best.safetensors").unlink()  # gone, as on a user's machine
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_a_missing_name_is_still_a_missing_file(tmp_path):
    with pytest.raises(FacemtlError, match="checkpoint facemtl_bse does not exist"):
        resolve_checkpoint_path("facemtl_bse")
