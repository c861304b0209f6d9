"""The engine: the only code that validates losses, builds a method's inputs, counts steps and touches autograd.

:func:`backward` (behind ``Balancer.backward``) and :func:`combine` (behind ``Balancer.combine``) run the same
sequence, :func:`_run`: inputs → ``method.aggregate`` → checked :class:`Aggregation` → write-back → step count.
The Gramian is computed in one place, :func:`gramian`. The engine reads a balancer only through the
:class:`~taskbalance.balancers.types.StepMethod` protocol and imports nothing above the types layer.

Gradient sources:

* ``params``: ``g_i = ∇_θ L_i`` over every shared parameter (one ``autograd.grad`` per task). The shared
  update ``d`` is written into the shared ``.grad``; the task-specific parameters get ``∇ Σ_i h_i L_i``.
* ``last_layer``: ``g_i`` over the last shared layer only (GradNorm, AvgNorm). The weights are then applied as
  loss weights: one backward of ``Σ_i w_i L_i`` fills the shared parameters.
* ``features``: ``g_i = ∇_z L_i`` on the shared representation ``z`` (MGDA-UB, LibMTL's ``rep_grad``); the encoder
  is back-propagated once with the combined feature gradient ``dz``.

Methods that only weigh losses take one backward of ``Σ_i w_i L_i`` and no per-task gradients at all.
Gradients accumulate into ``.grad`` (like ``loss.backward()``), so gradient accumulation keeps working.

Cost (what keeps the ``params`` source at the floor of K backward passes):

* The per-task gradients are kept as ``autograd.grad`` returns them, one tensor per source tensor and task (no
  list of flat rows, no concatenated K×d copy, no float64 copy). The Gramian is summed in float64 from one K×n
  block per source tensor (parameter or feature tensor), stacked chunk by chunk (:data:`GRAMIAN_BLOCK` columns)
  into one small reused buffer and multiplied in its own precision (at least float32): :func:`gramian_of_blocks`, the one place it is computed. The flat K×d J is formed
  only for a method that needs it (``requires == "jacobian"``) or for a reducer.
* Which form of ``d = Jᵀw`` (the rule): the Gramian needs every pair of gradients, so all K of them coexist
  whatever order they are computed in. When they cover the shared update (``params``, ``features``) ``d`` is
  combined from them in place (``g_1`` becomes ``d``: no K×d product buffer, no clone into ``.grad``), which costs
  less time than a (K+1)-th backward pass and no memory beyond the gradients. When they do not (``last_layer``)
  the calls stop at the last layer's output when the layer is a ``Linear`` or ``Conv2d`` run once per forward
  and its positions × positions kernel is smaller than its weight: the Gramian then follows from the layer's input
  and the K output gradients (:func:`layer_gramian`, the autogram identity), and no weight gradient is formed K
  times. The capture (:class:`LayerCapture`) is used only when exact: its input and output unmodified since the
  forward (version counters; after ``ReLU(inplace=True)`` or ``out += residual`` the step takes the per-task
  weight gradients), and it is kept only until its step. When the features are passed to ``backward``, the same
  calls also take each task's gradient on them and the encoder gets one backward of their combination
  ``dz = Σ_i w_i ∂L_i/∂z`` (no head is traversed twice); without features (or when a head reads a shared tensor
  around them), one reweighted backward of ``Σ_i w_i L_i``.
* Each task's head gradient comes from that task's own ``autograd.grad`` call (the heads' ``Σ_i h_i ∇L_i`` is
  summed from those pieces, no extra backward), and the last call frees the graph unless the encoder still needs it.
* ``is_grads_batched`` (a balancer option, off by default) takes the K gradients in one ``autograd.grad`` call
  vmapped over the K unit cotangents. It returns the same gradients; whether it is faster depends on the device,
  the model and the batch (on CPU it was not), so choose it by measuring (``benchmarks/step_time.py --batched``).
* A per-task gradient that is not finite (with finite losses: an fp16 overflow under a GradScaler) raises
  :class:`~taskbalance.balancers.types.NonFiniteGradientError` before the method runs or anything is written.

Distributed runs (``reducer``, a :class:`~taskbalance.balancers.types.GradientReducer`; None changes nothing):

* the K loss values go through ``reducer.sum_losses`` before anything else, so every process decides on the same
  losses (a non-finite global loss raises on every process alike);
* ``params`` / ``last_layer``: ``reducer.sum_jacobian(J)`` is applied right after J is formed, before the Gramian
  and the aggregation, so the method sees the global per-task gradients and ``d = Jᵀw`` is the global update
  (written into the shared ``.grad`` of ``params``: do not all-reduce those again);
* ``features``: the global feature gradient is the concatenation of the local ones, so the global Gramian is the
  sum of the local ones: ``reducer.sum_gramian(G)``; ``d = Jᵀw`` stays local (a method that needs J on features
  sees the local block: exact for element-wise rules such as GradDrop ``flat``).
* Everything filled by a backward pass (the heads, the shared parameters of ``last_layer``, ``features`` and
  loss-only methods) is local, to be all-reduced by the caller as in ordinary data parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from taskbalance.balancers.types import (
    GRADIENT_SOURCES,
    Aggregation,
    BalancerError,
    GradientReducer,
    GradientSource,
    NonFiniteGradientError,
    NonFiniteLossError,
    StepInputs,
    StepMethod,
    StepResult,
)

#: Columns per float32 block of the Gramian when J comes as one matrix (``combine``).
GRAMIAN_BLOCK = 1 << 16

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- numerics
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


class TaskGradients:
    """The K per-task gradients on a list of source tensors.

    Kept as autograd returns them (``rows[i][p]``: task i, tensor p; no copy) or, when ``batched``, as one K×…
    block per tensor. :meth:`flat` materialises the K×d matrix J (for methods that need J, and for a reducer),
    after which the rows are views of it.
    """

    def __init__(self, tensors: Sequence[Tensor], rows: list[list[Tensor]] | None, blocks: list[Tensor] | None) -> None:
        self.tensors = list(tensors)
        self.rows = rows
        self.blocks = blocks
        self.jacobian: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.rows) if self.rows is not None else self.blocks[0].shape[0]  # type: ignore[index]

    def _blocks(self) -> Iterable[Tensor]:
        """K×n blocks of J: the stored blocks, or the rows stacked chunk by chunk into one small reused buffer
        (:data:`GRAMIAN_BLOCK` columns: cache-resident, and no large fresh allocation to fault in)."""
        k = self.num_tasks
        if self.blocks is not None:
            yield from (block.reshape(k, -1) for block in self.blocks)
            return
        assert self.rows is not None
        buffer: Tensor | None = None
        for index in range(len(self.tensors)):
            flats = [row[index].reshape(-1) for row in self.rows]
            if buffer is None or buffer.dtype != flats[0].dtype:
                buffer = torch.empty(k * GRAMIAN_BLOCK, dtype=flats[0].dtype, device=flats[0].device)
            for start in range(0, flats[0].numel(), GRAMIAN_BLOCK):
                width = min(GRAMIAN_BLOCK, flats[0].numel() - start)
                out = buffer[: k * width].view(k, width)
                yield torch.stack([flat[start : start + width] for flat in flats], out=out)

    def gramian(self) -> Tensor:
        """``G = J Jᵀ`` (float64 CPU), one block per source tensor (or per chunk of it)."""
        return gramian_of_blocks(self._blocks())

    def flat(self) -> Tensor:
        """J (K×d): materialised once; the rows become views of it."""
        if self.jacobian is None:
            k, sizes = self.num_tasks, [t.numel() for t in self.tensors]
            dtype = self.tensors[0].dtype
            for t in self.tensors[1:]:
                dtype = torch.promote_types(dtype, t.dtype)
            jacobian = torch.empty(k, sum(sizes), dtype=dtype, device=self.tensors[0].device)
            offset = 0
            for index, size in enumerate(sizes):
                target = jacobian[:, offset : offset + size]
                if self.blocks is not None:
                    target.copy_(self.blocks[index].reshape(k, -1))
                else:
                    assert self.rows is not None
                    for i in range(k):
                        target[i].copy_(self.rows[i][index].reshape(-1))
                offset += size
            self.set_flat(jacobian)
        assert self.jacobian is not None
        return self.jacobian

    def set_flat(self, jacobian: Tensor) -> None:
        """Replace the gradients by ``jacobian`` (K×d, e.g. summed over processes)."""
        self.jacobian = jacobian
        offset, blocks = 0, []
        for t in self.tensors:
            blocks.append(jacobian[:, offset : offset + t.numel()])
            offset += t.numel()
        self.blocks, self.rows = blocks, None

    def combined(self, weights: Tensor) -> list[Tensor]:
        """``Σ_i w_i g_i`` per source tensor (shapes of the tensors). Consumes the gradients (reused in place)."""
        coefficients = [float(w) for w in weights]
        if self.blocks is not None:
            pieces = []
            for t, block in zip(self.tensors, self.blocks):
                block = block.reshape(len(coefficients), -1)
                pieces.append((weights.to(block) @ block).view(t.shape))
            return pieces
        assert self.rows is not None
        pieces = []
        for index in range(len(self.tensors)):
            first = self.rows[0][index]  # autograd's own buffer, reused unless it is a view such as an expand
            total = (first if first.is_contiguous() else first.clone()).mul_(coefficients[0])
            for i in range(1, len(coefficients)):
                total.add_(self.rows[i][index], alpha=coefficients[i])
            pieces.append(total)
        self.rows = None
        return pieces


class LayerCapture:
    """The input and output of the last shared layer's forward call since the last step (a forward hook).

    For a ``Linear`` or an ungrouped zero-padded ``Conv2d`` whose weight (and bias) is the whole last layer, the
    Gramian of the per-task weight gradients follows from the layer's input and the per-task gradients on its
    output (the autogram identity, :func:`layer_gramian`), so the per-task calls stop at the output and no weight
    gradient is formed K times. :meth:`take` hands the capture to one step, or None when it cannot be used; the
    step then takes the exact path (per-task gradients on the layer's parameters).

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

    def positions(self, layer_input: Tensor) -> Tensor:
        """The layer's input as one row per output position (im2col for a convolution): (positions × fan-in)."""
        module = self.module
        if isinstance(module, nn.Linear):
            return layer_input.reshape(-1, layer_input.shape[-1])
        assert isinstance(module, nn.Conv2d)
        patches = F.unfold(layer_input, module.kernel_size, module.dilation, module.padding, module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def usable(self, params: Sequence[Tensor], layer_output: Tensor) -> bool:
        """Whether ``params`` are exactly the module's weight and bias, and the positions × positions kernel of
        :func:`layer_gramian` is smaller than the weight (else the K weight gradients are the cheaper route)."""
        module = self.module
        own = [p for p in (module.weight, getattr(module, "bias", None)) if isinstance(p, Tensor) and p.requires_grad]
        if len(own) != len(params) or {id(p) for p in own} != {id(p) for p in params}:
            return False
        channels = layer_output.shape[1] if isinstance(module, nn.Conv2d) else layer_output.shape[-1]
        positions = layer_output.numel() // max(channels, 1)
        return positions * positions <= module.weight.numel()


def layer_gramian(capture: LayerCapture, layer_input: Tensor, deltas: Sequence[Tensor]) -> Tensor:
    """``G_ij = ⟨∇_W L_i, ∇_W L_j⟩`` (weight and bias) of a linear layer ``y = W x + b`` from its input rows ``x_a``
    and the per-task output gradients ``δ_i`` (one row per output position a):

        ∇_W L_i = Σ_a δ_ia x_aᵀ  ⇒  G_ij = Σ_ab (δ_ia·δ_jb) (x_a·x_b + [bias])

    Float32 products, float64 sum; used when the positions × positions kernel is smaller than the weight
    (:meth:`LayerCapture.usable`).
    """
    module = capture.module
    rows = capture.positions(layer_input)
    count = rows.shape[0]
    compute = torch.promote_types(rows.dtype, torch.float32)
    kernel = (rows.to(compute) @ rows.to(compute).T).double()
    if getattr(module, "bias", None) is not None and module.bias.requires_grad:
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


def task_gradients(
    losses: Sequence[Tensor], tensors: Sequence[Tensor], extra: Sequence[Tensor], retain_graph: bool, batched: bool
) -> tuple[TaskGradients, list[list[Tensor | None]]]:
    """The per-task gradients on ``tensors`` (zeros where unused) and, per task, the gradients of the ``extra``
    tensors taken in the same calls (None where unused). The graph is freed by the last call unless ``retain_graph``."""
    k = len(losses)
    inputs = [*tensors, *extra]
    if batched:
        stacked = torch.stack(list(losses))
        cotangents = torch.eye(k, dtype=stacked.dtype, device=stacked.device)
        grads = torch.autograd.grad(
            stacked, inputs, cotangents, retain_graph=retain_graph, allow_unused=True, is_grads_batched=True
        )
        blocks = [torch.zeros((k, *t.shape), dtype=t.dtype, device=t.device) if g is None else g for t, g in zip(tensors, grads)]
        extra_grads = [[None if g is None else g[i] for g in grads[len(tensors) :]] for i in range(k)]
        return TaskGradients(tensors, None, blocks), extra_grads
    rows, extra_grads = [], []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, inputs, retain_graph=retain_graph or i < k - 1, allow_unused=True)
        rows.append([torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)])
        extra_grads.append(list(grads[len(tensors) :]))
    return TaskGradients(tensors, rows, None), extra_grads


def _accumulate(param: Tensor, grad: Tensor, owned: bool) -> None:
    """Add ``grad`` into ``param.grad``; an ``owned`` tensor (made by the engine, used nowhere else) is stolen."""
    grad = grad.to(param.dtype)
    if param.grad is None:
        param.grad = grad if owned and grad.is_contiguous() else grad.clone()
    else:
        param.grad.add_(grad)


def reachable_leaves(roots: Sequence[Tensor], stop_at: Sequence[Tensor] = ()) -> list[Tensor]:
    """Leaf tensors requiring grad that the roots depend on, without walking through ``stop_at`` tensors."""
    stop = {t.grad_fn for t in stop_at if t.grad_fn is not None}
    seen: set[object] = set()
    leaves: dict[int, Tensor] = {}
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(leaves.values())


# ----------------------------------------------------------------------------------------------- validation
def check_source(method: StepMethod, source: str) -> GradientSource:
    """``source`` if it is a gradient source ``method`` supports, else a :class:`BalancerError`."""
    if source not in GRADIENT_SOURCES:
        raise BalancerError(f"{method.name}: source must be one of {GRADIENT_SOURCES}, got {source!r}")
    if source not in method.supported_sources:
        raise BalancerError(f"{method.name} supports the gradient sources {method.supported_sources}, not {source!r}")
    return source  # type: ignore[return-value]


def loss_values(method: StepMethod, losses: Mapping[str, Tensor] | Tensor, reducer: GradientReducer | None = None) -> Tensor:
    """The K loss values (float64 CPU, task order; summed by ``reducer``), checked: count and finiteness."""
    if isinstance(losses, Mapping):
        _check_task_keys(method, losses)
        values = torch.stack([torch.as_tensor(losses[t]).detach().reshape(()) for t in method.tasks])
    else:
        values = torch.as_tensor(losses).detach().reshape(-1)
    values = values.to(torch.float64).cpu()
    if values.numel() != len(method.tasks):
        raise BalancerError(f"{method.name}: expected {len(method.tasks)} losses, got {values.numel()}")
    if reducer is not None:
        values = reducer.sum_losses(values).to(torch.float64).cpu()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(method.tasks[bad], float(values[bad]), int(method.step_count))
    return values


def _check_task_keys(method: StepMethod, losses: Mapping[str, object]) -> None:
    missing = [t for t in method.tasks if t not in losses]
    unknown = [t for t in losses if t not in method.tasks]
    if missing or unknown:
        problems = ", ".join(f"{what} {names}" for what, names in (("missing", missing), ("unknown", unknown)) if names)
        raise BalancerError(f"{method.name}: expected losses of the tasks {list(method.tasks)}: {problems}")


def _ordered_losses(method: StepMethod, losses: Mapping[str, Tensor]) -> list[Tensor]:
    if not isinstance(losses, Mapping):
        raise BalancerError(f"losses must be a dict task -> scalar tensor, got {type(losses).__name__}")
    _check_task_keys(method, losses)
    ordered = []
    for task in method.tasks:
        loss = losses[task]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise BalancerError(f"loss of task {task!r} must be a scalar tensor")
        if not loss.requires_grad:
            raise BalancerError(f"loss of task {task!r} does not require grad (computed under no_grad or detached?)")
        ordered.append(loss.reshape(()))
    return ordered


def _feature_list(features: Tensor | Sequence[Tensor] | None) -> list[Tensor]:
    if features is None:
        raise BalancerError("source 'features' needs the shared representation: pass features=... to backward()")
    tensors = [features] if isinstance(features, Tensor) else list(features)
    if not tensors or not all(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        raise BalancerError("features must be tensors produced by the shared encoder (requiring grad)")
    return tensors


def _source_tensors(method: StepMethod, source: GradientSource, features: Tensor | Sequence[Tensor] | None) -> list[Tensor]:
    if source == "features":
        return _feature_list(features)
    params = method.last_layer_params if source == "last_layer" else method.shared_params
    if not params:
        what = "last_layer (or a shared module to infer it from)" if source == "last_layer" else "shared"
        raise BalancerError(f"{method.name}: source {source!r} needs the balancer to be built with {what}=...")
    return params


def _head_parameters(method: StepMethod, losses: Sequence[Tensor], stop_at: Sequence[Tensor], strict: bool = True) -> list[Tensor] | None:
    """The leaves the losses reach that are not shared (through ``stop_at`` only, when given). A shared parameter
    reached by a path that bypasses ``stop_at`` is an error, or, unless ``strict``, gives None."""
    shared_ids = {id(p) for p in method.shared_params}
    leaves = reachable_leaves(losses, stop_at=stop_at)
    if stop_at:
        leaked = [p for p in leaves if id(p) in shared_ids]
        if leaked and not strict:
            return None
        if leaked:
            raise BalancerError(
                f"{method.name}: the losses reach {len(leaked)} shared parameter(s) by a path that bypasses the "
                "features passed to backward(); pass every shared tensor the heads read (a list is fine)"
            )
    return [p for p in leaves if id(p) not in shared_ids]


def _checked(method: StepMethod, aggregation: Aggregation) -> Aggregation:
    k, step = len(method.tasks), int(method.step_count)
    weights = aggregation.weights
    if weights.shape != (k,):
        raise RuntimeError(f"{method.name} returned weights of shape {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()):
        raise FloatingPointError(f"{method.name} produced non-finite weights {weights.tolist()} at step {step}")
    direction = aggregation.direction
    if direction is not None and (direction.dim() != 1 or not bool(torch.isfinite(direction).all())):
        raise FloatingPointError(f"{method.name} produced a non-finite or non-flat direction at step {step}")
    return Aggregation(
        weights=weights.detach().to(torch.float64).cpu(),
        direction=direction,
        head_weights=None if aggregation.head_weights is None else aggregation.head_weights.detach().double().cpu(),
    )


def head_coefficients(method: StepMethod, aggregation: Aggregation) -> Tensor:
    """Coefficients of the task losses for the task-specific parameters."""
    if aggregation.head_weights is not None:
        return aggregation.head_weights
    if method.head_gradients == "raw":
        return torch.ones(len(method.tasks), dtype=torch.float64)
    return aggregation.weights


# ----------------------------------------------------------------------------------------------- the sequence
@dataclass
class _Gradients:
    """Per-task gradients on one source (``task``, dropped once not needed), their Gramian, and what the shared
    update is combined from: ``update`` (the source's own gradients, or the features' for ``last_layer``), applied
    into ``.grad`` or, when ``through_features``, by one backward through the encoder; the heads' pieces."""

    source: GradientSource
    task: TaskGradients | None
    gramian: Tensor
    update: TaskGradients | None = None
    through_features: bool = False
    head_params: list[Tensor] = field(default_factory=list)
    head_grads: list[list[Tensor | None]] = field(default_factory=list)


def _run(
    method: StepMethod,
    values: Tensor,
    gradients: _Gradients | None,
    write: Callable[[Aggregation], T],
) -> T:
    """The one step sequence: inputs → aggregate → check → write → count."""
    requires = method.requires
    jacobian = features = None
    if gradients is not None and gradients.task is not None and requires == "jacobian":
        jacobian = gradients.task.flat()
        if gradients.source == "features":
            features = tuple(t.detach() for t in gradients.task.tensors)
    inputs = StepInputs(
        losses=values,
        gramian=gradients.gramian if gradients is not None and requires != "losses" else None,
        jacobian=jacobian,
        step=int(method.step_count),
        features=features,
    )
    result = write(_checked(method, method.aggregate(inputs)))
    method.step_count += 1
    return result


def combine(method: StepMethod, jacobian: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """From per-task gradients ``J`` (K×d) return ``(d, weights)``, advancing the method like a training step."""
    k = len(method.tasks)
    if jacobian.dim() != 2 or jacobian.shape[0] != k:
        raise BalancerError(f"{method.name}: jacobian must be K×d with K={k}, got {tuple(jacobian.shape)}")
    if losses is None:
        if method.requires == "losses" or method.needs_loss_values:
            raise BalancerError(f"{method.name} reads the loss values: pass the task losses to combine()")
        values = torch.zeros(k, dtype=torch.float64)
    else:
        values = loss_values(method, losses)
    j = jacobian.detach()
    gradients = None
    if method.requires != "losses":
        task = TaskGradients([j[0]], None, None)
        task.set_flat(j)
        gradients = _Gradients("params", task, gramian(j), [], [])

    def direction(aggregation: Aggregation) -> tuple[Tensor, Tensor]:
        if aggregation.direction is not None:
            return aggregation.direction.to(j), aggregation.weights
        return aggregation.weights.to(j) @ j, aggregation.weights

    return _run(method, values, gradients, direction)


def backward(
    method: StepMethod,
    losses: Mapping[str, Tensor],
    features: Tensor | Sequence[Tensor] | None,
    source: GradientSource,
    diagnose: GradientSource | None,
    reducer: GradientReducer | None = None,
) -> StepResult:
    """Compute what ``method`` needs, let it aggregate, write ``.grad`` (see the module docstring)."""
    capture = method.last_layer_capture
    taken = capture.take() if isinstance(capture, LayerCapture) else None  # every step: never keep a graph alive
    loss_list = _ordered_losses(method, losses)
    values = loss_values(method, torch.stack([loss.detach() for loss in loss_list]), reducer)
    needs_gradients = method.requires != "losses"
    if needs_gradients:
        source = check_source(method, source)
    elif diagnose is not None and diagnose not in GRADIENT_SOURCES:
        raise BalancerError(f"diagnose must be one of {GRADIENT_SOURCES}, got {diagnose!r}")
    gradient_source: GradientSource | None = source if needs_gradients else diagnose
    gradients = None
    if gradient_source is not None:
        gradients = _gradients(method, loss_list, gradient_source, features, needs_gradients, reducer, taken)

    def write(aggregation: Aggregation) -> StepResult:
        result = _result(method, values, aggregation, gradients)
        heads = head_coefficients(method, aggregation)
        if gradients is not None and gradients.update is not None:
            _write_direction(method, gradients, aggregation, heads)
        else:
            _write_weighted_losses(method, loss_list, aggregation, heads)
        return result

    return _run(method, values, gradients, write)


def _gradients(
    method: StepMethod,
    loss_list: list[Tensor],
    source: GradientSource,
    features: Tensor | Sequence[Tensor] | None,
    needs_gradients: bool,
    reducer: GradientReducer | None,
    taken: tuple[Tensor, Tensor] | None = None,
) -> _Gradients:
    """Per-task gradients on ``source``, and the pieces of the update when they can come from the same calls.

    ``params`` / ``features``: the update is combined from the source's gradients. ``last_layer`` with features
    given (and no head reading a shared tensor around them): the calls also take the features' gradients, and the
    encoder gets one backward of their combination (the heads are not traversed twice). Otherwise the update is
    one reweighted backward of the losses.
    """
    tensors = _source_tensors(method, source, features)
    feature_list: list[Tensor] = []
    if source == "last_layer" and features is not None and method.shared_params:
        feature_list = _feature_list(features)
    heads: list[Tensor] | None = None
    if source in ("params", "features"):  # a method's own features source must cover the heads; a diagnosis need not
        heads = _head_parameters(method, loss_list, tensors if source == "features" else (), strict=needs_gradients)
    elif feature_list:
        heads = _head_parameters(method, loss_list, feature_list, strict=False)
        feature_list = feature_list if heads is not None else []
    extra = [*feature_list, *(heads or [])]
    # the graph is still needed after these calls by a reweighted backward, or by the encoder backward from the
    # features when the calls went past them into the encoder (last_layer)
    retain = heads is None or source == "last_layer"
    capture = method.last_layer_capture
    through_layer = (
        source == "last_layer" and taken is not None and isinstance(capture, LayerCapture)
        and method.requires != "jacobian" and reducer is None and capture.usable(tensors, taken[1])
    )  # fmt: skip
    if through_layer:
        assert taken is not None and isinstance(capture, LayerCapture)
        task, extra_grads, gram = _layer_gradients(method, loss_list, capture, taken, extra, retain)
    else:
        task, extra_grads = task_gradients(loss_list, tensors, extra, retain, method.is_grads_batched)
        if reducer is not None and source != "features":
            task.set_flat(reducer.sum_jacobian(task.flat()))
        gram = task.gramian()
    if reducer is not None and source == "features":
        gram = reducer.sum_gramian(gram).to(torch.float64).cpu()
    finite = torch.isfinite(gram.diagonal())  # G_ii = ‖g_i‖²: finite exactly when g_i is
    if not bool(finite.all()):
        raise NonFiniteGradientError([t for t, ok in zip(method.tasks, finite) if not ok], int(method.step_count))
    # last_layer: the (local) last-layer gradients give that layer's share of the update, unless summed by a reducer
    keep = source != "last_layer" or method.requires == "jacobian" or (heads is not None and reducer is None and not through_layer)
    gradients = _Gradients(source, task if keep else None, gram)
    if heads is None:
        return gradients
    count = len(feature_list)
    gradients.head_params, gradients.head_grads = heads, [row[count:] for row in extra_grads]
    if source == "last_layer":
        zero = [[torch.zeros_like(z) if g is None else g for z, g in zip(feature_list, row[:count])] for row in extra_grads]
        gradients.update, gradients.through_features = TaskGradients(feature_list, zero, None), True
    else:
        gradients.update, gradients.through_features = task, source == "features"
    return gradients


def _layer_gradients(
    method: StepMethod,
    loss_list: list[Tensor],
    capture: LayerCapture,
    taken: tuple[Tensor, Tensor],
    extra: Sequence[Tensor],
    retain: bool,
) -> tuple[TaskGradients, list[list[Tensor | None]], Tensor]:
    """Per-task calls that stop at the last layer's output; G from its input and the output gradients."""
    layer_input, layer_output = taken
    task, extra_grads = task_gradients(loss_list, [layer_output], extra, retain, method.is_grads_batched)
    if task.rows is not None:
        deltas = [row[0] for row in task.rows]
    else:
        assert task.blocks is not None
        deltas = list(task.blocks[0])
    return task, extra_grads, layer_gramian(capture, layer_input, deltas)


def _write_weighted_losses(method: StepMethod, loss_list: Sequence[Tensor], aggregation: Aggregation, heads: Tensor) -> None:
    """Shared parameters from one reweighted backward of ``Σ_i w_i L_i`` (loss-only methods, ``last_layer``)."""
    weights = aggregation.weights
    if aggregation.direction is not None:
        raise BalancerError(f"{method.name} produces a direction, which needs source 'params' or 'features'")
    if torch.equal(heads, weights):
        _weighted_sum(loss_list, weights).backward()
        return
    shared = method.shared_params
    if not shared:
        raise BalancerError(f"{method.name}: raw head gradients need the balancer to be built with shared=...")
    torch.autograd.backward(_weighted_sum(loss_list, weights), inputs=shared, retain_graph=True)
    head_params = _head_parameters(method, loss_list, stop_at=())
    if head_params:
        torch.autograd.backward(_weighted_sum(loss_list, heads), inputs=head_params)


def _split(flat: Tensor, tensors: Sequence[Tensor]) -> list[Tensor]:
    pieces, offset = [], 0
    for t in tensors:
        pieces.append(flat[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()
    return pieces


def _write_direction(method: StepMethod, gradients: _Gradients, aggregation: Aggregation, heads: Tensor) -> None:
    """Shared update combined from per-task gradients (into ``.grad``, or back through the encoder), heads summed."""
    update = gradients.update
    assert update is not None
    tensors, explicit = update.tensors, aggregation.direction
    if explicit is not None:
        if gradients.source == "last_layer":
            raise BalancerError(f"{method.name} produces a direction, which needs source 'params' or 'features'")
        size = sum(t.numel() for t in tensors)
        if explicit.numel() != size:
            raise RuntimeError(f"{method.name} returned a direction of size {explicit.numel()}, expected {size}")
        pieces, owned = _split(explicit, tensors), False
    else:
        pieces, owned = update.combined(aggregation.weights), True
    shared = method.shared_params
    if gradients.source == "last_layer" and gradients.task is not None:
        # the last layer's share of the update is Σ_i w_i g_i, already at hand: the encoder backward skips it
        last = {id(p) for p in method.last_layer_params}
        if last <= {id(p) for p in shared}:
            for param, piece in zip(gradients.task.tensors, gradients.task.combined(aggregation.weights)):
                _accumulate(param, piece, owned=True)
            shared = [p for p in shared if id(p) not in last]
    gradients.task = gradients.update = None  # the last use of J: free it before the heads and the encoder backward
    for index, param in enumerate(gradients.head_params):
        parts = [float(h) * grads[index] for h, grads in zip(heads, gradients.head_grads) if grads[index] is not None]
        if parts:
            _accumulate(param, torch.stack(parts).sum(0) if len(parts) > 1 else parts[0], owned=True)
    gradients.head_grads = []
    if not gradients.through_features:
        for param, piece in zip(method.shared_params, pieces):
            _accumulate(param, piece, owned)
        return
    # Back-propagating the scalar Σ ⟨z, dz⟩ (dz constant) gives the encoder exactly the gradient of ``dz``; unlike
    # ``backward(tensors, grad_tensors=...)`` it does not make torch import sympy (seconds) on first use.
    surrogate = sum(((z * dz.to(z.dtype)).sum() for z, dz in zip(tensors, pieces)), torch.zeros((), device=tensors[0].device))
    torch.autograd.backward(surrogate, inputs=shared or None)


def _weighted_sum(losses: Sequence[Tensor], coefficients: Tensor) -> Tensor:
    return sum((float(c) * loss for c, loss in zip(coefficients, losses)), torch.zeros((), device=losses[0].device))


def _result(method: StepMethod, values: Tensor, aggregation: Aggregation, gradients: _Gradients | None) -> StepResult:
    direction_norm = dots = None
    gram = None if gradients is None else gradients.gramian
    if gradients is not None and gram is not None:
        explicit = aggregation.direction
        if explicit is not None and gradients.task is not None and gradients.task.jacobian is not None:
            jacobian = gradients.task.jacobian
            direction = explicit.to(jacobian)
            dots = (jacobian @ direction).double().cpu()
            direction_norm = float(direction.double().norm())
        else:
            dots = gram @ aggregation.weights
            direction_norm = float((aggregation.weights @ dots).clamp_min(0).sqrt())
    return StepResult(
        tasks=method.tasks,
        losses={t: float(v) for t, v in zip(method.tasks, values)},
        weights={t: float(w) for t, w in zip(method.tasks, aggregation.weights)},
        source=None if gradients is None else gradients.source,
        gramian=gram,
        direction_norm=direction_norm,
        task_direction_dot=dots,
    )
