"""A small optimiser whose state lives in module buffers, for parameters a method steps itself.

MAL's meta-net and DACL's attention net are updated outside the trainer's optimiser. Holding
their optimiser state as buffers of an ``nn.Module`` puts it in the method's ``state_dict``:
checkpoints (tensors only, safetensors) and exact resume cover it with no change to the
trainer.
"""

from __future__ import annotations

import torch
from torch import nn


class BufferedOptimizer(nn.Module):
    """Adam (bias-corrected, as ``torch.optim.Adam``) or SGD with momentum (as ``torch.optim.SGD``).

    Args:
        params: the parameters it will update (order fixed; :meth:`step` takes them again).
        kind: ``adam`` or ``sgd``.
        lr: learning rate (a :meth:`step` may pass the current, scheduled one).
        weight_decay: L2 added to the gradient (coupled, as both torch optimisers do).
        momentum: SGD momentum (dampening 0, no Nesterov); ignored by Adam.
        betas, eps: Adam's.
    """

    def __init__(self, params: list[nn.Parameter], kind: str, lr: float, weight_decay: float = 0.0,
                 momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__()
        if kind not in ("adam", "sgd"):
            raise ValueError(f"optimiser kind {kind!r}; expected adam or sgd")
        self.kind, self.lr, self.weight_decay, self.momentum, self.betas, self.eps = kind, lr, weight_decay, momentum, betas, eps
        for i, p in enumerate(params):
            self.register_buffer(f"exp_avg_{i}", torch.zeros_like(p))  # Adam's first moment / SGD's momentum buffer
            if kind == "adam":
                self.register_buffer(f"exp_avg_sq_{i}", torch.zeros_like(p))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def step(self, params: list[nn.Parameter], grads: tuple[torch.Tensor | None, ...], lr: float | None = None) -> None:
        """Update ``params`` in place from ``grads`` (same order as at construction; None = no gradient)."""
        lr = self.lr if lr is None else lr
        self.steps += 1
        t = int(self.steps)
        beta1, beta2 = self.betas
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:
                continue
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m = getattr(self, f"exp_avg_{i}")
            if self.kind == "sgd":
                if self.momentum:
                    # torch.optim.SGD: the buffer starts as the first gradient, then buf = momentum * buf + g
                    g = m.copy_(g) if t == 1 else m.mul_(self.momentum).add_(g)
                p.add_(g, alpha=-lr)
                continue
            v = getattr(self, f"exp_avg_sq_{i}")
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / (1 - beta2**t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
