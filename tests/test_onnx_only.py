"""The ONNX-only inference install (README, Install): `facemtl predict` on a `.onnx` model
never imports torch, nor any package that install leaves out.

Proved without uninstalling anything: `facemtl predict` runs in a subprocess whose import
system refuses torch, torchvision, timm, safetensors and matplotlib (a meta-path finder
that raises ImportError and records the attempt), on an ONNX file exported here from a
tiny checkpoint.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media" / "single_face.jpg"
pytestmark = pytest.mark.skipif(not PHOTO.is_file(), reason="shared media not available")

#: What the ONNX-only install does not have (README, Install).
ABSENT = ("torch", "torchvision", "timm", "safetensors", "matplotlib")

_WITHOUT_TORCH = """
import importlib.abc, json, sys

ABSENT, attempts = set(json.loads(sys.argv[1])), []


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: an ONNX-only install)", name=name)
        return None


sys.meta_path.insert(0, Absent())
from facemtl.cli import main

status = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ABSENT)
print(json.dumps({"status": status, "attempts": attempts, "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    from tiny_checkpoint import make_tiny_checkpoint

    from facemtl.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx_only")
    checkpoint = make_tiny_checkpoint(folder / "tiny.safetensors")
    return checkpoint, export_onnx(checkpoint, folder / "tiny.onnx")


def _predict_without_torch(*args: str) -> tuple[dict, str]:
    return _without_torch("predict", *args)


def _without_torch(*argv: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, json.dumps(ABSENT), *argv],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


@pytest.mark.parametrize("backend", [[], ["--backend", "onnx"]], ids=["by-suffix", "backend-onnx"])
def test_predict_with_an_onnx_model_imports_no_torch(models, tmp_path, backend):
    import pandas as pd

    from facemtl import FaceAnalyzer

    checkpoint, onnx_model = models
    out = tmp_path / "rows.csv"
    result, stderr = _predict_without_torch(str(PHOTO), "--checkpoint", str(onnx_model), *backend, "--out", str(out))
    assert result == {"status": 0, "attempts": [], "loaded": []}, stderr
    rows = pd.read_csv(out)
    reference = FaceAnalyzer(checkpoint).predict(PHOTO)  # the same model with PyTorch, in this process
    assert list(rows.columns) == list(reference.columns) and len(rows) == len(reference) == 1
    assert rows.success.tolist() == [1] and rows.expr_label.tolist() == reference.expr_label.tolist()
    numeric = reference.select_dtypes("number").columns
    assert abs(rows[numeric].to_numpy(float) - reference[numeric].to_numpy(float)).max() < 1e-3


def test_a_torch_checkpoint_without_torch_is_a_one_line_error(models):
    checkpoint, _ = models
    result, stderr = _predict_without_torch(str(PHOTO), "--checkpoint", str(checkpoint))
    assert result["status"] == 2 and result["loaded"] == [], stderr
    assert stderr.count("\n") == 1 and "needs PyTorch" in stderr and ".onnx" in stderr


def test_other_commands_without_torch_say_what_is_missing(tmp_path):
    result, stderr = _without_torch("train", str(Path(__file__).resolve().parents[1] / "configs" / "synthetic_plain.yaml"), "--out", str(tmp_path / "run"))
    assert result["status"] == 2 and "Traceback" not in stderr
    assert "facemtl train needs torch, which is not installed" in stderr.strip().splitlines()[-1]
