"""Gramian numerics: ``G = J Jᵀ`` of the per-task gradients, the one place it is computed.

* :func:`gramian_of_blocks`: ``G = Σ_p B_p B_pᵀ`` from K×n column blocks of J, each product in its own precision
  (at least float32), summed in float64 on the CPU. Every other function here ends in it.
* :func:`gramian`: the same for a whole K×d J, cut into blocks of :data:`GRAMIAN_BLOCK` columns (``combine``).
* :func:`layer_gramian`: the Gramian of a ``Linear`` or ``Conv2d`` layer's per-task weight gradients from the
  layer's input and the per-task gradients on its output (the autogram identity), without forming any weight
  gradient; :func:`layer_rows` is its im2col.

Imports only :mod:`taskbalance.balancers.types`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from taskbalance.balancers.types import BalancerError

#: Columns per float32 block of the Gramian (a whole J in ``combine``, and the reused stacking buffer of
#: :class:`~taskbalance.balancers.gradients.TaskGradients`).
GRAMIAN_BLOCK = 1 << 16


def gramian_of_blocks(blocks: Iterable[Tensor]) -> Tensor:
    """``G = Σ_p B_p B_pᵀ`` in float64 on the CPU, each K×n block product computed in its precision (≥ float32).

    The one place the Gramian is computed: a float32 block costs one float32 matrix product and no float64 copy
    of J; a float64 block (``combine`` on a float64 J) is summed in float64 throughout.
    """
    total: Tensor | None = None
    for block in blocks:
        block = block.to(torch.promote_types(block.dtype, torch.float32))
        product = (block @ block.T).double()
        total = product if total is None else total + product
    if total is None:
        raise BalancerError("the gradient source has no tensors")
    return total.cpu()


def gramian(jacobian: Tensor, block_sizes: Sequence[int] | None = None) -> Tensor:
    """``G = J Jᵀ`` (float64 CPU) over column blocks of J (default :data:`GRAMIAN_BLOCK` columns each)."""
    d = jacobian.shape[1]
    if block_sizes is None:
        block_sizes = [min(GRAMIAN_BLOCK, d - start) for start in range(0, d, GRAMIAN_BLOCK)] or [0]
    starts = [sum(block_sizes[:i]) for i in range(len(block_sizes))]
    return gramian_of_blocks(jacobian[:, start : start + size] for start, size in zip(starts, block_sizes))


def layer_rows(module: nn.Module, layer_input: Tensor) -> Tensor:
    """The input of a ``Linear`` or ``Conv2d`` layer as one row per output position (im2col for a convolution):
    (positions × fan-in)."""
    if isinstance(module, nn.Linear):
        return layer_input.reshape(-1, layer_input.shape[-1])
    assert isinstance(module, nn.Conv2d) and not isinstance(module.padding, str)  # LayerCapture's layers only
    patches = F.unfold(layer_input, module.kernel_size, module.dilation, module.padding, module.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def layer_gramian(module: nn.Module, layer_input: Tensor, deltas: Sequence[Tensor]) -> Tensor:
    """``G_ij = ⟨∇_W L_i, ∇_W L_j⟩`` (weight and bias) of a linear layer ``y = W x + b`` from its input rows ``x_a``
    and the per-task output gradients ``δ_i`` (one row per output position a):

        ∇_W L_i = Σ_a δ_ia x_aᵀ  ⇒  G_ij = Σ_ab (δ_ia·δ_jb) (x_a·x_b + [bias])

    Float32 products, float64 sum; used when the positions × positions kernel is smaller than the weight
    (:meth:`~taskbalance.balancers.capture.LayerCapture.usable`).
    """
    rows = layer_rows(module, layer_input)
    count = rows.shape[0]
    compute = torch.promote_types(rows.dtype, torch.float32)
    kernel = (rows.to(compute) @ rows.to(compute).T).double()
    bias = getattr(module, "bias", None)
    if isinstance(bias, Tensor) and bias.requires_grad:
        kernel = kernel + 1.0
    if isinstance(module, nn.Conv2d):  # N×C×H×W, positions in the order of the unfolded input: (n, h, w)
        out = [d.to(compute).permute(0, 2, 3, 1).reshape(count, -1) for d in deltas]
    else:
        out = [d.to(compute).reshape(count, -1) for d in deltas]
    k = len(deltas)
    gram = torch.empty(k, k, dtype=torch.float64, device=kernel.device)
    for i in range(k):
        for j in range(i, k):
            gram[i, j] = gram[j, i] = ((out[i] @ out[j].T).double() * kernel).sum()
    return gram.cpu()
