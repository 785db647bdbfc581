import pytest
import torch

from facemtl.methods.buffered_optimizer import BufferedOptimizer


@pytest.mark.parametrize("kind, options", [
    ("sgd", {"momentum": 0.9, "weight_decay": 5e-4}),
    ("sgd", {"momentum": 0.0, "weight_decay": 0.0}),
    ("adam", {"weight_decay": 1e-2}),
])
def test_matches_torch_optimizers(kind, options):
    torch.manual_seed(0)
    mine = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    ours = BufferedOptimizer(mine, kind, lr=0.1, **options)
    reference = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(theirs, lr=0.1, **options)
    for step in range(5):
        grads = tuple(torch.randn_like(p) for p in mine)
        lr = 0.1 / (step + 1)  # a schedule: the step's lr overrides the constructor's
        ours.step(mine, grads, lr=lr)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        reference.param_groups[0]["lr"] = lr
        reference.step()
        for a, b in zip(mine, theirs):
            assert torch.allclose(a, b, atol=1e-6), step


def test_state_is_in_the_state_dict():
    params = [torch.nn.Parameter(torch.ones(2))]
    optim = BufferedOptimizer(params, "sgd", lr=0.1, momentum=0.9)
    optim.step(params, (torch.ones(2),))
    state = optim.state_dict()
    assert int(state["steps"]) == 1 and state["exp_avg_0"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="expected adam or sgd"):
        BufferedOptimizer(params, "rmsprop", lr=0.1)
