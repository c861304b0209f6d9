"""Capturing the last shared layer's forward call (a forward hook), so that the ``last_layer`` Gramian can come
from the layer's input and output gradients instead of K weight gradients.

Imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class LayerCapture:
    """The input and output of the last shared layer's forward call since the last step (a forward hook).

    For a ``Linear`` or an ungrouped zero-padded ``Conv2d`` whose weight (and bias) is the whole last layer, the
    Gramian of the per-task weight gradients follows from the layer's input and the per-task gradients on its
    output (the autogram identity, :func:`~taskbalance.balancers.gramian.layer_gramian`), so the per-task calls
    stop at the output and no weight gradient is formed K times. :meth:`take` hands the capture to one step, or None
    when it cannot be used; the step then takes the exact path (per-task gradients on the layer's parameters).

    What is kept, and for how long (a capture holds the output's autograd graph):

    * only a forward call that a backward can use: autograd enabled, the layer in training mode and an output that
      requires grad (an evaluation, under ``no_grad`` or in eval mode, captures nothing);
    * one call: a second call before the step makes the capture ambiguous (the layer ran twice in one graph, or a
      forward was never followed by a step), so nothing is kept and the step takes the exact path;
    * until the step (:meth:`take` forgets it) or :meth:`close` (which also removes the hook).

    Exactness: the tensors' version counters are recorded at capture. When the output was modified in place after
    the layer (``ReLU(inplace=True)``, ``out += residual``), a gradient taken on it would be the gradient on the
    modified tensor, not on the layer's output; when the input was, the kernel would read other values. Either way
    :meth:`take` returns None and the exact path is taken.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.count = 0  # forward calls captured since the last step
        self.latest: tuple[Tensor, Tensor, int, int] | None = None  # input (detached), output, their versions
        # exact types: a subclass may transform its weight or input first (timm's StdConv2d, Conv2dSame)
        supported = type(module) is nn.Linear or (
            type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        )  # fmt: skip
        self.handle = module.register_forward_hook(self._hook) if supported else None

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        usable = (
            torch.is_grad_enabled() and module.training and isinstance(output, Tensor) and output.requires_grad
            and bool(inputs) and isinstance(inputs[0], Tensor)
        )  # fmt: skip
        if not usable:
            return
        self.count += 1
        layer_input = inputs[0]
        self.latest = (layer_input.detach(), output, layer_input._version, output._version) if self.count == 1 else None

    def take(self) -> tuple[Tensor, Tensor] | None:
        """``(input, output)`` of the one forward call since the last step, unmodified since (then forgotten)."""
        latest, self.latest, self.count = self.latest, None, 0
        if latest is None:
            return None
        layer_input, output, input_version, output_version = latest
        if layer_input._version != input_version or output._version != output_version:
            return None
        return layer_input, output

    def close(self) -> None:
        """Remove the hook and forget the capture (idempotent; later steps take the exact path)."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.latest, self.count = None, 0

    def usable(self, params: Sequence[Tensor], layer_output: Tensor) -> bool:
        """Whether ``params`` are exactly the module's weight and bias, and the positions × positions kernel of
        :func:`~taskbalance.balancers.gramian.layer_gramian` is smaller than the weight (else the K weight gradients
        are the cheaper route)."""
        module = self.module
        weight = module.weight
        assert isinstance(weight, Tensor)  # a Linear or Conv2d: the only layers that get a hook
        own = [p for p in (weight, getattr(module, "bias", None)) if isinstance(p, Tensor) and p.requires_grad]
        if len(own) != len(params) or {id(p) for p in own} != {id(p) for p in params}:
            return False
        channels = layer_output.shape[1] if isinstance(module, nn.Conv2d) else layer_output.shape[-1]
        positions = layer_output.numel() // max(channels, 1)
        return positions * positions <= weight.numel()

