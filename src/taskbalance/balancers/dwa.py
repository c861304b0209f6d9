"""Dynamic Weight Average (DWA): Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
arXiv 1803.10704 (Eq. 7).

Rule, with ``L_k(t)`` the average training loss of task k over epoch t:

    r_k(t−1) = L_k(t−1) / L_k(t−2),      λ_k(t) = K exp(r_k(t−1)/T) / Σ_i exp(r_i(t−1)/T),

``λ_k = 1`` for the first two epochs, weights fixed within an epoch, ``L = Σ_k λ_k L_k`` (heads weighted, the
weighted sum is back-propagated). ``Σ_k λ_k = K``. ``T = 2`` (the paper; the study searched T ∈ {0.5, …, 4}).

Modes:

* ``epoch`` (official, ``lorenmt/mtan`` ``im2im_pred/utils.py``; LibMTL): :meth:`aggregate` adds each step's
  losses to the running epoch sums and :meth:`epoch_end` closes the epoch (call it once per training epoch).
* ``iteration`` (the Nash-MTL repository's ``DynamicWeightAverage``): a FIFO of the last ``2·window`` step losses,
  initialised to ones; the ratio is mean(last ``window``)/mean(previous ``window``), recomputed at every step once
  more than ``window`` steps have run (using the FIFO that already holds the current losses), earlier weights 1.
  Deviation: Nash-MTL returns ``mean_k(λ_k L_k)``; we keep ``Σ_k λ_k L_k`` (the library's summed-loss scale).
  :meth:`epoch_end` does nothing in this mode.

Degenerate losses: the ratio of averages is meaningless for negative losses, so they are rejected with a clear
error. A zero average in the denominator is replaced by ``1e-12`` (a task whose loss was 0 and is still 0 gets
ratio 0; one that rose from 0 gets a huge ratio, i.e. almost all of the weight), so no NaN can appear.
All state (running sums, epoch averages, FIFO, counters, current weights) is in buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.registry import register_balancer

_DENOMINATOR_FLOOR = 1e-12


class DWAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float = Field(2.0, gt=0, allow_inf_nan=False, description="softmax temperature T")
    mode: Literal["epoch", "iteration"] = Field(
        "epoch",
        description="'epoch': official epoch averages (call epoch_end()); 'iteration': Nash-MTL's sliding window",
    )
    window: int = Field(25, ge=1, description="iteration mode only: steps per averaging window")


def dwa_weights(previous: Tensor, before_previous: Tensor, temperature: float) -> Tensor:
    """``λ = K softmax((L(t−1)/L(t−2)) / T)``, the denominator floored at 1e-12."""
    ratio = previous / before_previous.clamp_min(_DENOMINATOR_FLOOR)
    return previous.numel() * torch.softmax(ratio / temperature, dim=0)


@register_balancer
class DWA(Balancer):
    """Weights from the ratio of each task's recent average losses (loss descending rate)."""

    name = "dwa"
    advances_per_epoch = True
    description = "Dynamic Weight Average: K·softmax(L(t-1)/L(t-2)/T) of epoch-average losses (Liu 2019)."
    requires = "losses"
    Options = DWAOptions
    options: DWAOptions
    weights: Tensor
    epoch_loss_sum: Tensor
    epoch_steps: Tensor
    epoch_averages: Tensor
    epochs_done: Tensor
    loss_window: Tensor
    window_steps: Tensor

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        k = self.num_tasks
        self.register_buffer("weights", torch.ones(k, dtype=torch.float64))
        if self.options.mode == "epoch":
            self.register_buffer("epoch_loss_sum", torch.zeros(k, dtype=torch.float64))
            self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
            self.register_buffer("epoch_averages", torch.zeros(2, k, dtype=torch.float64))  # rows: t−2, t−1
            self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        else:
            self.register_buffer("loss_window", torch.ones(2 * self.options.window, k, dtype=torch.float64))
            self.register_buffer("window_steps", torch.zeros((), dtype=torch.long))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        losses = inputs.losses.to(self.weights)
        if bool((losses < 0).any()):
            raise BalancerError(
                f"{self.name} takes ratios of average losses, which needs losses >= 0; got {losses.tolist()}"
            )
        if self.options.mode == "epoch":
            self.epoch_loss_sum += losses
            self.epoch_steps += 1
        else:
            self._slide_window(losses)
        return Aggregation(weights=self.weights.clone())

    def _slide_window(self, losses: Tensor) -> None:
        window = self.options.window
        self.loss_window.copy_(torch.cat([self.loss_window[1:], losses[None]]))
        if int(self.window_steps) > window:
            older, newer = self.loss_window[:window].mean(0), self.loss_window[window:].mean(0)
            self.weights.copy_(dwa_weights(newer, older, self.options.temperature))
        self.window_steps += 1

    def epoch_end(self) -> None:
        """Close the epoch: store its average losses and set the next epoch's weights (epoch mode)."""
        if self.options.mode != "epoch":
            return
        if int(self.epoch_steps) == 0:
            raise BalancerError(f"{self.name}: epoch_end() called with no training step since the previous epoch_end()")
        average = self.epoch_loss_sum / self.epoch_steps
        self.epoch_averages.copy_(torch.stack([self.epoch_averages[1], average]))
        self.epochs_done += 1
        self.epoch_loss_sum.zero_()
        self.epoch_steps.zero_()
        if int(self.epochs_done) >= 2:
            self.weights.copy_(dwa_weights(self.epoch_averages[1], self.epoch_averages[0], self.options.temperature))
