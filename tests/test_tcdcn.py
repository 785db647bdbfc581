"""TCDCN: the early-stopping criterion (methods.md 5(f)), the L2 objective, the 40x40 network, the method."""

import math
from pathlib import Path

import pytest
import torch
from conftest import interrupt_then_resume
from test_mtfl import write_mtfl

from facemtl.cli import main
from facemtl.config import load_config
from facemtl.data.augment import to_grey
from facemtl.engine import Trainer
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import load_checkpoint
from facemtl.labels import LabelSpaces
from facemtl.losses.early_stopping import stop_index, stop_index_from_history, training_stall, validation_rise
from facemtl.losses.landmarks import landmark_l2_loss
from facemtl.methods import TrainContext
from facemtl.methods.tcdcn import TCDCNMethod
from facemtl.models import create_backbone
from facemtl.tasks.network import build_network

CONTEXT = TrainContext(num_train=8, epochs=10, steps_per_epoch=1)
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "tcdcn_mtfl.yaml"


# -- the criterion ---------------------------------------------------------------------
def test_decreasing_train_and_flat_val_never_stop():
    assert stop_index_from_history([5.0, 3.0, 2.0, 1.5, 1.2], [1.0] * 5, k=5, importance=1.0) == 0.0
    assert stop_index([0.9, 0.5, 0.3, 0.2, 0.15], 0.7, 0.7, 1.0) == 0.0  # val at its best: second factor 0


def test_flat_train_and_rising_val_stop():
    index = stop_index_from_history([1.0] * 6, [1.0, 0.9, 0.92, 0.95, 1.0, 1.05], k=5, importance=1.0)
    assert math.isfinite(index) and index > 1e3  # the guarded first factor blows up, the rise is 1/6
    assert training_stall([1.0] * 5) == pytest.approx(1e6)  # sum - k*med = 0: capped at 1 / guard


def test_guarded_division_and_factors():
    assert training_stall([0.0] * 5) == 0.0 and training_stall([2.0, 1.0, 1.0, 0.1, 0.0]) == pytest.approx(1e6)
    assert training_stall([4.0, 2.0, 1.0, 1.0, 1.0]) == pytest.approx(5 * 1 / (9 - 5))  # falling strip: small
    assert validation_rise(1.2, 1.0, 2.0) == pytest.approx(0.1)  # a larger lambda needs a larger rise
    assert validation_rise(1.0, 0.0, 1.0) > 1e9  # best loss 0: floored, finite
    assert stop_index_from_history([1.0, 1.0], [1.0, 2.0], k=5, importance=1.0) == 0.0  # fewer than k epochs
    with pytest.raises(ValueError):
        validation_rise(1.0, 1.0, 0.0)


def test_landmark_l2_is_half_squared_norm_over_labelled_faces():
    pred = torch.zeros(3, 5, 2, requires_grad=True)
    target = torch.full((3, 5, 2), 0.1)
    loss = landmark_l2_loss(pred, target, torch.tensor([True, True, False]))
    assert float(loss.detach()) == pytest.approx(0.5 * 10 * 0.01)
    empty = landmark_l2_loss(pred, target, torch.zeros(3, dtype=torch.bool))
    empty.backward()
    assert float(empty.detach()) == 0.0 and pred.grad is not None


# -- the network -----------------------------------------------------------------------
def test_network_shapes():
    backbone = create_backbone("tcdcn")
    fmap = backbone.forward_features(torch.rand(2, 1, 40, 40))
    assert fmap.shape == (2, 80, 2, 2) and backbone.forward_head(fmap).shape == (2, 256)
    assert backbone.num_features == 256
    net = build_network("tcdcn_relu", ["lmk", "attr"], LabelSpaces())
    out = net(torch.rand(2, 3, 40, 40))
    sizes = {"lmk": out["lmk"][0].numel(), **{k: v.shape[1] for k, v in out["attr"].items()}}
    assert sizes == {"lmk": 10, "gender": 2, "smile": 2, "glasses": 2, "pose": 5} and out["feat"].shape == (2, 256)
    colour = torch.rand(2, 3, 40, 40)  # the backbone's own grey conversion is data.grey's luminance
    assert torch.allclose(net.eval()(colour)["feat"], net(to_grey(colour))["feat"], atol=1e-5)


# -- the method ------------------------------------------------------------------------
def _method(**options) -> TCDCNMethod:
    extra = [f"method.{k}={v}" for k, v in options.items()]
    config = load_config(None, ["method.name=tcdcn", "method.strip=2", *extra])
    net = build_network("test_tiny", ["lmk", "attr"], LabelSpaces())
    return TCDCNMethod(net, config.method, CONTEXT)


def _batch(n: int = 4) -> dict:
    return {"image": torch.rand(n, 3, 32, 32), "index": torch.arange(n),
            "labels": {"lmk": torch.rand(n, 5, 2), "attr": torch.zeros(n, 4, dtype=torch.long)},
            "mask": {"lmk": torch.ones(n, dtype=torch.bool), "attr": torch.ones(n, 4, dtype=torch.bool)}}


class _Val:
    """A validation split stand-in whose batches come from a fixed list."""

    def __init__(self, batch):
        self.batch = batch

    def __len__(self):
        return len(self.batch["index"])

    def __getitems__(self, indices):
        return self.batch


def test_switch_off_is_logged_and_kept_in_state(capsys, monkeypatch):
    method = _method(threshold=0.5)
    method.on_fit_start({"val": _Val(_batch())})
    val_losses = iter([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 1.0, 1.0]])  # smile's validation loss doubles
    monkeypatch.setattr(method, "validation_losses", lambda: next(val_losses))
    for epoch in range(2):
        method.training_step(_batch())
        method.epoch_sums[:, 0] = method.epoch_sums[:, 1]  # flat training loss 1.0 for every attribute
        logs = method.on_epoch_end(epoch)
    assert logs["aux_smile_active"] == 0.0 and logs["aux_gender_active"] == 1.0 and logs["aux_smile_index"] > 0.5
    assert method.stopped() == {"smile": 2} and "'smile' stopped after epoch 2" in capsys.readouterr().out
    restored = _method(threshold=0.5)
    restored.load_state_dict(method.state_dict())
    assert restored.active.tolist() == [True, False, True, True] and restored.stopped() == {"smile": 2}
    result = restored.training_step(_batch())
    result["loss"].backward()
    assert restored.net.heads["attr"].classifiers["smile"].weight.grad is None  # no loss, no gradient
    assert restored.net.heads["attr"].classifiers["gender"].weight.grad is not None


def test_config_errors():
    with pytest.raises(FacemtlError, match="unknown attribute"):
        _method(**{"attr_weights.beard": 1.0})
    with pytest.raises(FacemtlError, match="needs the lmk task"):
        TCDCNMethod(build_network("test_tiny", ["attr"], LabelSpaces()), load_config(None, ["method.name=tcdcn"]).method,
                    CONTEXT)


def test_train_one_epoch_on_fake_mtfl(tmp_path):
    root = write_mtfl(tmp_path / "mtfl", train=12, test=3)
    out = tmp_path / "run"
    argv = ["train", str(RECIPE), "--out", str(out), "--set", f"data.root={root}",
            "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "data.val_fraction=0.25",
            "--set", "train.progress=false", "--set", "method.strip=2"]
    assert main(argv) == 0
    checkpoint = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert "active" in {k.split(".")[-1] for k in checkpoint.model_state}
    assert (out / "metrics.json").is_file() and "aux_pose_val" in (out / "log.csv").read_text()


def test_resume_after_interrupt_is_exact_with_augmentation(tmp_path, monkeypatch):
    root = write_mtfl(tmp_path / "mtfl", train=12, test=2)
    config = load_config(RECIPE, [
        f"data.root={root}", "model.backbone=test_tiny", "data.image_size=32", "train.epochs=2", "train.batch_size=3",
        "train.progress=false", "train.checkpoint_every=1", "method.strip=2", "data.val_fraction=0.25"])
    Trainer(config, tmp_path / "straight").fit()
    interrupt_then_resume(config, tmp_path / "killed", monkeypatch, at_call=5)  # mid second epoch (3 steps each)
    last = {name: load_checkpoint(tmp_path / name / "checkpoints" / "last.safetensors").model_state
            for name in ("straight", "killed")}
    assert all(torch.equal(last["straight"][k], last["killed"][k]) for k in last["straight"])
