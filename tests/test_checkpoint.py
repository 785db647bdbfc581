"""Checkpoints: safetensors round trip, optimiser state, task-set mismatch, no pickle."""

import pytest
import torch

from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from facemtl.labels import LabelSpaces
from facemtl.tasks.network import build_network

SPACES = LabelSpaces(au_names=("AU1", "AU12"))


def _trained_net_and_optimizer():
    torch.manual_seed(0)
    net = build_network("test_tiny", ["expr", "au"], SPACES)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(2):
        out = net(torch.rand(4, 3, 32, 32))
        loss = out["expr"].logsumexp(1).mean() + out["au"].pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net, optimizer


def test_round_trip_weights_optimizer_and_metadata(tmp_path):
    net, optimizer = _trained_net_and_optimizer()
    path = save_checkpoint(
        tmp_path / "ck.safetensors", net.state_dict(), config_yaml="train:\n  lr: 0.01\n", label_spaces=SPACES,
        tasks=net.tasks, trainer_state={"epoch": 3}, optimizer_state=optimizer.state_dict(), rng_state=torch.get_rng_state(),
    )
    assert not path.with_name(path.name + ".tmp").exists()
    loaded = load_checkpoint(path)
    assert loaded.config == {"train": {"lr": 0.01}}
    assert loaded.label_spaces == SPACES and loaded.trainer_state == {"epoch": 3}

    fresh = build_network("test_tiny", ["expr", "au"], SPACES)
    load_model_state(fresh, loaded, fresh.tasks)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fresh_optimizer.load_state_dict(loaded.optimizer_state)
    original = optimizer.state_dict()["state"]
    restored = fresh_optimizer.state_dict()["state"]
    assert original.keys() == restored.keys()
    for param_id in original:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(original[param_id][key], restored[param_id][key])


def test_task_set_mismatch_is_explained(tmp_path):
    net, _ = _trained_net_and_optimizer()
    path = save_checkpoint(tmp_path / "ck.safetensors", net.state_dict(), config_yaml="{}", label_spaces=SPACES, tasks=net.tasks)
    other = build_network("test_tiny", ["expr", "va"], SPACES)
    with pytest.raises(FacemtlError, match=r"trained for tasks \['expr', 'au'\], the model has \['expr', 'va'\]"):
        load_model_state(other, load_checkpoint(path), other.tasks)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(FacemtlError, match="not a readable safetensors file"):
        load_checkpoint(junk)
    with pytest.raises(FacemtlError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(FacemtlError, match="no checkpoints/best.safetensors"):
        load_checkpoint(tmp_path)
