"""MAL — Meta Auxiliary Learning for facial action unit detection (Yong Li, Shiguang Shan,
IEEE Transactions on Affective Computing; arXiv 2105.06620).

AU detection (main task, multi-label BCE) is trained together with facial expression
recognition (auxiliary task, CE). A meta-net g(input; psi) gives every AU sample and every
expression sample a non-negative weight; psi is learned so that one SGD step on the weighted
loss lowers the *unweighted* AU loss on a small held-out AU "meta" set. One iteration
(methods.md §1(a)):

1. meta-train: weights w(psi) from the current features; a differentiable virtual step
   theta*(psi) = theta - alpha * grad L_train(theta; psi) (``torch.func.functional_call``
   on the unchanged network, no rewritten layers);
2. meta-test: L_val(theta*(psi)), the plain AU loss of a meta batch; one step on psi;
3. base learning: weights recomputed with the new psi, detached; the real optimiser step.

There is no official code; the paper leaves these open, so they are options (defaults in
:class:`MALConfig`): weight normalisation (``normalize``), the meta-net's input and width,
which parameters take the virtual step (``virtual_step: all | heads`` = heads + last
backbone stage), the inner lr (default: the optimiser's current lr) and the meta optimiser
(Adam, as Meta-Weight-Net).

Where this departs from the paper, and why:

- The base batch is forwarded once, on the real parameters with *copies* of the BatchNorm
  buffers; the virtual step and the real step both use that graph, and the copies' updated
  running statistics are written back after the real step. So BN statistics move once per
  iteration, and the meta passes never touch theta, its optimiser or its BN buffers.
- The meta-net reads a detached input: weights depend on psi only, as in Meta-Weight-Net's code.
  Besides the paper's feature it may read each face's losses (Meta-Weight-Net) and per-face
  histories (``dynamics``, ``alignment``: :mod:`facemtl.methods.mal.history`), the input with
  which MAL found corrupted auxiliary labels on the synthetic benchmark (docs/benchmarks.md, MAL).
- ``weight_from_epoch``: the real steps may keep unit weights for a warm-up while psi learns.
- The meta-net has one output per weighted task (``au``, ``expr``): a face may carry both
  labels (synthetic benchmark). With ``weight_au: false`` it is the paper's d -> 100 -> 1.
- The meta set (K faces with AU labels) is carved from the *training* split with a seeded
  draw and removed from every base batch (``meta_holdout: false`` keeps them there too); K is
  logged. psi, its optimiser's state and the per-face histories are buffers and parameters of
  the method, so checkpoints and resume cover them.
- ``hypergradient: difference`` computes the one-step hypergradient from the meta gradient at
  theta* and one forward difference (no second-order backward), and logs each face's alignment
  with the meta gradient (``align_*``): what the meta-net is taught.
- ``virtual_step: heads`` moves nothing under the backbone's last stage, so on backbones that
  split there (built-in VGG-style ones) the ``difference`` pass starts from the base pass's
  last-stage input instead of running the whole network again.
"""

from facemtl.methods.mal.config import META_INPUTS, MALConfig
from facemtl.methods.mal.history import HISTORY_TASKS, FaceHistory
from facemtl.methods.mal.meta_set import draw_meta_set, drop_faces
from facemtl.methods.mal.method import MALMethod
from facemtl.methods.mal.network import last_stage_prefix

__all__ = ["HISTORY_TASKS", "META_INPUTS", "FaceHistory", "MALConfig", "MALMethod", "draw_meta_set", "drop_faces",
           "last_stage_prefix"]
