"""ONNX export: parity with PyTorch, dynamic batch, metadata, the CLI, and the torch-free backend.

The checkpoint is a real one: a test_tiny network trained for one epoch on the synthetic
benchmark with grey faces, so the export, the metadata and the grey conversion of the
inference pipeline are all exercised the way a user's run would exercise them.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from facemtl.cli import main
from facemtl.errors import FacemtlError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTO, GROUP = SHARED / "media" / "obama.jpg", SHARED / "media" / "multi_face.jpg"
YUNET = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
needs_media = pytest.mark.skipif(not PHOTO.is_file() or not GROUP.is_file() or not YUNET.is_file(),
                                 reason="shared media not available")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from conftest import TINY

    from facemtl.config import load_config
    from facemtl.engine import Trainer

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run") / "tiny"
    config = load_config(None, TINY + ["train.epochs=1", "data.grey=true"])
    Trainer(config, run).fit()
    return run / "checkpoints" / "best.safetensors"


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> Path:
    from facemtl.export import export_onnx

    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_in_fp32_at_any_batch_size(checkpoint, exported, batch):
    from facemtl.export import flatten_outputs
    from facemtl.tasks.network import load_network
    from facemtl.pipeline.backends import OnnxModel

    net, _ = load_network(checkpoint)
    model = OnnxModel(exported)
    assert [i.shape[0] for i in model.session.get_inputs()] == ["batch"]  # dynamic, not the example's 2
    images = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = flatten_outputs(net(images), net.tasks, net.label_spaces)
    got = model(images.numpy())
    assert list(got) == list(expected) == ["expr", "au", "va", "lmk", "attr_gender", "attr_smile", "attr_glasses", "attr_pose"]
    for name, value in expected.items():
        assert got[name].shape == tuple(value.shape) and got[name].shape[0] == batch
        assert np.abs(got[name] - value.numpy()).max() < 1e-4, name
    # outputs depend on the image: parity is not two constant functions agreeing
    darker = model(np.ascontiguousarray(images.numpy() * 0.3))
    assert np.abs(darker["expr"] - got["expr"]).max() > 1e-3


def test_metadata_round_trips_everything_inference_needs(checkpoint, exported):
    import onnx

    from facemtl.io.checkpoint import load_checkpoint
    from facemtl.pipeline.backends import read_onnx_metadata

    ckpt = load_checkpoint(checkpoint)
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    info = read_onnx_metadata(props, exported)
    assert info.label_spaces == ckpt.label_spaces and info.tasks == ("expr", "au", "va", "lmk", "attr")
    assert info.image_size == 32 and info.grey is True
    assert np.allclose(info.template, ckpt.preprocess["template_5pt"])
    import yaml

    assert yaml.safe_load(props["config"]) == ckpt.config
    assert json.loads(props["source"])["checkpoint"] == "best.safetensors"
    assert json.loads(props["outputs"]) == [o.name for o in onnx.load(str(exported)).graph.output]


def test_numpy_grey_matches_the_training_conversion():
    from facemtl.data.augment import to_grey
    from facemtl.pipeline import backends

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert np.abs(backends.to_grey(images.numpy()) - to_grey(images).numpy()).max() < 1e-6


def test_cli_export_and_its_one_line_errors(checkpoint, tmp_path, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint.parents[1]), "--onnx", str(out)]) == 0  # a run folder
    assert out.is_file() and "max abs diff" in capsys.readouterr().out
    for args in (["--checkpoint", str(tmp_path / "missing.safetensors"), "--onnx", str(out)],
                 ["--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "model.txt")]):
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("facemtl: error:")


def test_backend_choice_and_bad_models_are_user_errors(checkpoint, exported, tmp_path):
    from facemtl import FaceAnalyzer

    assert FaceAnalyzer(exported).backend == "onnx" and FaceAnalyzer(checkpoint).backend == "torch"
    with pytest.raises(FacemtlError, match="facemtl export"):
        FaceAnalyzer(checkpoint, backend="onnx")
    with pytest.raises(FacemtlError, match="backend 'onnx'"):
        FaceAnalyzer(exported, backend="torch")
    with pytest.raises(FacemtlError, match="unknown backend"):
        FaceAnalyzer(exported, backend="tensorrt")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(FacemtlError, match="cannot load"):
        FaceAnalyzer(garbage)._load()
    if YUNET.is_file():  # a valid ONNX model, but not a facemtl export
        with pytest.raises(FacemtlError, match="not a facemtl ONNX export"):
            FaceAnalyzer(YUNET)._load()


def _predict(model: Path, backend: str, inputs: list[Path], grey: bool = True):
    from facemtl import FaceAnalyzer

    analyzer = FaceAnalyzer(model, detector="yunet", batch_size=4, backend=backend, detector_options={"model": YUNET})
    analyzer._load()
    analyzer.grey = grey
    return analyzer.predict(inputs)


@needs_media
def test_torch_and_onnx_backends_give_the_same_rows(checkpoint, exported):
    torch_rows = _predict(checkpoint, "torch", [PHOTO, GROUP])
    onnx_rows = _predict(exported, "onnx", [PHOTO, GROUP])
    assert list(onnx_rows.columns) == list(torch_rows.columns) and len(onnx_rows) == len(torch_rows) == 6
    assert onnx_rows.success.all() and (onnx_rows.expr_label == torch_rows.expr_label).all()
    numeric = torch_rows.select_dtypes("number").columns
    assert np.allclose(onnx_rows[numeric], torch_rows[numeric], atol=1e-4)
    # the comparison can fail: colour faces into this grey model (a preprocessing slip) move predictions
    colour = _predict(exported, "onnx", [PHOTO, GROUP], grey=False)
    assert not np.allclose(colour[numeric], torch_rows[numeric], atol=1e-4)


_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any `import torch` on this path now raises ImportError
from facemtl import FaceAnalyzer
from facemtl.cli import main
model, photo, yunet, out = sys.argv[1:]
df = FaceAnalyzer(model, detector="yunet", backend="onnx", detector_options={"model": yunet}).predict(photo)
import os
os.environ["FACEMTL_YUNET"] = yunet
status = main(["predict", photo, "--checkpoint", model, "--backend", "onnx", "--detector", "yunet", "--out", out])
print(json.dumps({"rows": df.to_dict("records"), "status": status}))
"""


@needs_media
def test_onnx_backend_runs_without_torch(checkpoint, exported, tmp_path):
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(exported), str(PHOTO), str(YUNET), str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 0 and out.stat().st_size > 0
    (row,) = result["rows"]
    reference = _predict(checkpoint, "torch", [PHOTO]).iloc[0]
    assert row["success"] == 1 and row["expr_label"] == reference.expr_label
    for column in ("face_x", "lmk5_x_0", "lmk5_y_4", "AU12_p", "expr_neutral", "valence", "attr_pose_frontal"):
        assert abs(row[column] - reference[column]) < 1e-4, column


def test_onnx_devices_map_to_execution_providers():
    from facemtl.pipeline.backends import _providers

    cpu_only, with_cuda = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert _providers("cpu", with_cuda) == _providers("auto", cpu_only) == ["CPUExecutionProvider"]
    assert _providers("auto", with_cuda)[0] == "CUDAExecutionProvider"
    assert _providers("cuda:1", with_cuda)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(FacemtlError, match="no CUDA provider"):
        _providers("cuda", cpu_only)
    with pytest.raises(FacemtlError, match="unknown device"):
        _providers("gpu", with_cuda)
