"""MultiTaskNet: outputs keyed by task, feature and feature map, any backbone."""

import pytest
import torch

from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.models import create_backbone
from facemtl.tasks.network import build_network

SPACES = LabelSpaces(au_names=("AU1", "AU2", "AU12"), num_landmarks=5)


def test_outputs_keyed_by_task_with_shapes():
    torch.manual_seed(0)
    net = build_network("test_tiny", ["expr", "au", "va", "lmk", "attr"], SPACES).eval()
    out = net(torch.rand(2, 3, 48, 48))
    assert out["expr"].shape == (2, 7)
    assert out["au"].shape == (2, 3)
    assert out["va"].shape == (2, 2) and out["va"].abs().max() <= 1
    assert out["lmk"].shape == (2, 5, 2)
    assert set(out["attr"]) == {"gender", "smile", "glasses", "pose"} and out["attr"]["pose"].shape == (2, 5)
    assert out["feat"].shape == (2, net.num_features)
    assert out["feat_map"].shape[:2] == (2, net.num_features) and out["feat_map"].dim() == 4


def test_only_enabled_tasks_have_heads():
    net = build_network("test_tiny", ["lmk", "expr"], SPACES)
    assert net.tasks == ("expr", "lmk")  # canonical order
    out = net(torch.rand(1, 3, 32, 32))
    assert "au" not in out and "attr" not in out


def test_timm_backbone_by_name():
    net = build_network("resnet10t", ["expr"], SPACES)
    out = net(torch.rand(2, 3, 64, 64))
    assert out["expr"].shape == (2, 7) and out["feat"].shape == (2, 512)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(FacemtlError, match=r"unknown backbone 'resnet1000'; valid: built-in .*tiny.*timm"):
        create_backbone("resnet1000")


def test_local_backbone_weights_load_strictly(tmp_path):
    from safetensors.torch import save_file

    source = create_backbone("test_tiny")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_backbone("test_tiny", str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    save_file({"nothing.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(FacemtlError, match="do not match"):
        create_backbone("test_tiny", str(tmp_path / "bad.safetensors"))


def test_backbone_from_a_facemtl_checkpoint_or_the_shipped_model(tmp_path, tiny_overrides):
    from facemtl.config import load_config
    from facemtl.engine import Trainer
    from facemtl.io.checkpoint import load_checkpoint

    Trainer(load_config(None, [*tiny_overrides, "train.epochs=1", "model.tasks=expr"]), tmp_path / "source").fit()
    trained = load_checkpoint(tmp_path / "source").model_state
    # fine-tuning on other tasks: only the backbone comes from the run, the heads are new
    net = build_network("test_tiny", ["au", "va"], LabelSpaces(au_names=("AU1",)), pretrained=str(tmp_path / "source"))
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, trained[f"net.backbone.{key}"]), key
    with pytest.raises(FacemtlError, match="backbone is 'test_tiny', model.backbone is 'tiny'"):
        create_backbone("tiny", str(tmp_path / "source"))
    shipped = create_backbone("small", "facemtl_base")  # the packaged model's backbone, by name
    assert not torch.equal(shipped.state_dict()["stages.0.0.0.weight"], create_backbone("small").state_dict()["stages.0.0.0.weight"])
    with pytest.raises(FacemtlError, match="expected a .safetensors file, a facemtl run folder or facemtl_base"):
        create_backbone("small", str(tmp_path / "nowhere.pt"))


@pytest.mark.parametrize("branch_tasks", [[], ["au"]])
def test_forward_can_start_at_the_last_stage(branch_tasks):
    torch.manual_seed(0)
    net = build_network("test_tiny", ["expr", "au"], SPACES, branch_tasks=branch_tasks).eval()
    images = torch.rand(3, 3, 32, 32)
    below = net.forward_below_last_stage(images)
    assert below.shape == (3, 8, 16, 16)  # test_tiny: (8, 16) channels, each stage halves the size
    full, started = net(images), net(images, below=below)
    for key in ("expr", "au", "feat"):
        assert torch.equal(full[key], started[key]), key
    assert not torch.equal(net(images, below=below + 0.1)["expr"], full["expr"])  # the images are not read again
    timm_net = build_network("convnext_atto", ["expr"], SPACES)
    assert net.splits_at_last_stage and not timm_net.splits_at_last_stage
    with pytest.raises(FacemtlError, match="ConvNeXt cannot be split at its last stage"):
        timm_net.forward_below_last_stage(images)


def test_branch_tasks_get_their_own_last_stage(tmp_path, tiny_overrides):
    from facemtl.config import load_config
    from facemtl.engine import Trainer
    from facemtl.tasks.network import load_network

    torch.manual_seed(0)
    net = build_network("test_tiny", ["expr", "lmk", "attr"], SPACES, branch_tasks=["attr", "lmk"])
    assert net.branch_tasks == ("lmk", "attr")
    for (key, copy), shared in zip(net.branch_stage.state_dict().items(), net.backbone.stages[-1].state_dict().values()):
        assert torch.equal(copy, shared), key  # starts as the shared stage
    out = net(torch.rand(4, 3, 32, 32))
    out["lmk"].sum().backward()
    # landmarks train the layers below the split and their own stage, never the shared last stage
    assert all(p.grad is None for p in net.backbone.stages[-1].parameters())
    assert all(p.grad is not None for p in net.branch_stage.parameters())
    assert all(p.grad is not None for p in net.backbone.stages[0].parameters())
    net.zero_grad(set_to_none=True)
    net(torch.rand(4, 3, 32, 32))["expr"].sum().backward()
    assert all(p.grad is None for p in net.branch_stage.parameters())
    with pytest.raises(FacemtlError, match=r"model.branch_tasks=\['au'\]: \['au'\] not in model.tasks"):
        build_network("test_tiny", ["expr", "lmk"], SPACES, branch_tasks=["au"])
    with pytest.raises(FacemtlError, match="needs a built-in VGG-style backbone"):
        build_network("convnext_atto", ["expr", "lmk"], SPACES, branch_tasks=["lmk"])  # has .stages, and a stem
    # the option travels with the checkpoint: a trained run reloads strictly
    overrides = [*tiny_overrides, "train.epochs=1", "model.tasks=[expr,lmk,attr]", "model.branch_tasks=[lmk,attr]"]
    Trainer(load_config(None, overrides), tmp_path / "run").fit()
    loaded, _ = load_network(tmp_path / "run")
    assert loaded.branch_tasks == ("lmk", "attr")
