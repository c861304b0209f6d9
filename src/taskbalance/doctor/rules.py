"""The doctor's thresholds and its recommendation rule.

Every threshold is a named constant with its source. Sources are the paper (002, "unbalanced optimization" in
multi-task dense prediction) only; none was fitted to any study's results (test split), and the study validation
in ``docs/doctor.md`` measures them there without changing them.

The paper's figures of norms (Figs. 8, 15, 16) are curves without printed values; the numbers below come from what
the paper prints next to them. Tab. VI lists AvgNorm's mean loss weights on NYUD-v2 with ResNet-18 (Seg. 1.22,
Dep. 2.47, Norm. 3.97, Edge 114.00). AvgNorm sets ``w_i = S / ‖g_i‖`` (Eq. 6) with one ``S`` per step, so the weights'
ratios are the inverse ratios of the task gradient norms on the last shared layer: relative to the largest (Seg.),
Dep. is 2.02x smaller, Norm. 3.25x, Edge 93x; as shares of the summed norm, Seg. 0.55, Dep. 0.27, Norm. 0.17,
Edge 0.006 (an approximation: means of weights, under AvgNorm's training rather than uniform's). Tab. II: Uniform
leaves exactly Norm. and Edge below single-task on that setting, Seg. and Dep. above.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Literal

from taskbalance.doctor.signals import DoctorError, PairConflict, Signals, wilson

#: Norms are **marked** when the median over steps of ``max_i ‖g_i‖ / min_i ‖g_i‖`` reaches this. Source: paper
#: Tab. VI with Tab. II (module docstring): on NYUD-v2 / ResNet-18 the task 2.02x below the largest norm (Dep.) stays
#: above single-task under Uniform, the one 3.25x below (Norm.) falls below; 2.5 lies between the two.
NORM_RATIO_MARKED = 2.5

#: A task is **at risk** when its share of the update's contributions ``w_i‖g_i‖ / Σ_j w_j‖g_j‖`` (averaged over
#: steps) is below this fraction of the equal share ``1/K``. Source: the shares implied by paper Tab. VI (module
#: docstring) are Seg. 0.55, Dep. 0.27, Norm. 0.17, Edge 0.006, i.e. 2.21, 1.09, 0.68 and 0.02 of the equal share 1/4;
#: Tab. II shows Uniform leaving exactly Norm. and Edge below single-task. Any fraction in (0.68, 1.09) separates them;
#: 0.8 lies inside and far enough below 1 that the tasks of a balanced run, whose shares scatter around 1/K, are not
#: flagged.
AT_RISK_FRACTION_OF_EQUAL = 0.8

#: A task pair **conflicts** when its mean cosine is below this (PCGrad's definition of conflicting gradients,
#: cos < 0; reference/methods.md) ...
CONFLICT_COS = 0.0
#: ... and the lower bound of the fraction of steps with a negative cosine exceeds this. Source: paper App. A
#: (Figs. 10-13): task gradients tend to be orthogonal, which puts about half the steps below zero by chance alone; a
#: conflict must be negative on more steps than that. The bound is Wilson's at a family-wise 95% over the K(K-1)/2
#: pairs (Bonferroni), so orthogonal gradients flag no pair in about 19 of 20 runs whatever K.
CONFLICT_STEP_FRACTION = 0.5

#: The loss-scaling recommendation when norms are marked: the paper's AvgNorm (Eq. 6, Tabs. VI-VII: on par with the
#: grid search), then other registered methods that rescale task losses from gradient norms.
LOSS_SCALING: tuple[str, ...] = ("avgnorm", "gradnorm", "imtl")
#: The conflict-aware recommendation when only conflicts are marked: CAGrad, with Nash-MTL the paper's best-performing
#: gradient methods (Sec. V-F, Figs. 7-16), then PCGrad (projects conflicting gradients).
CONFLICT_AWARE: tuple[str, ...] = ("cagrad", "nashmtl", "pcgrad")
#: When both are marked the paper's central finding decides (imbalance follows the norms, not the angles: Sec. V-F,
#: Figs. 8, 10-13): loss scaling first, then the methods the paper finds balance both (App. B: CAGrad, Nash-MTL).
BOTH: tuple[str, ...] = ("avgnorm", "nashmtl", "cagrad")
#: Neither marked: keep equal weights.
NEITHER: tuple[str, ...] = ("uniform",)
#: Every method the rule can name (each must be a registered balancer; a test checks it).
RULE_METHODS: tuple[str, ...] = tuple(dict.fromkeys(LOSS_SCALING + CONFLICT_AWARE + BOTH + NEITHER))

Verdict = Literal["norm-dominated", "conflict-dominated", "norms and conflicts", "balanced"]


@dataclass(frozen=True)
class Recommendation:
    """The rule's outcome: the method to use, alternatives, and why, with the numbers that triggered it."""

    verdict: Verdict
    method: str
    alternatives: tuple[str, ...]
    reason: str
    triggers: dict[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnosis:
    """A run's signals, its tasks at risk (smallest contribution share first) and the recommendation."""

    signals: Signals
    at_risk: tuple[str, ...]
    recommendation: Recommendation


def norms_marked(signals: Signals) -> bool:
    """True when the gradient norms differ by :data:`NORM_RATIO_MARKED` or more (median over steps)."""
    return signals.norm_ratio >= NORM_RATIO_MARKED


def conflict_bound(pair: PairConflict, pairs: int) -> float:
    """Lower Wilson bound of the pair's fraction of negative steps at a family-wise 95% over ``pairs`` pairs."""
    z = statistics.NormalDist().inv_cdf(1 - 0.025 / max(1, pairs))
    return wilson(pair.negative.k, pair.negative.n, z).low


def conflicting_pairs(signals: Signals) -> tuple[PairConflict, ...]:
    """The pairs whose mean cosine is below :data:`CONFLICT_COS` and that are negative on more than
    :data:`CONFLICT_STEP_FRACTION` of the steps beyond chance (:func:`conflict_bound`), most negative first."""
    found = [p for p in signals.pairs
             if p.mean_cos < CONFLICT_COS and conflict_bound(p, len(signals.pairs)) > CONFLICT_STEP_FRACTION]
    return tuple(sorted(found, key=lambda p: p.mean_cos))


def tasks_at_risk(signals: Signals) -> tuple[str, ...]:
    """Tasks whose contribution share is below :data:`AT_RISK_FRACTION_OF_EQUAL` of ``1/K``, smallest first."""
    line = AT_RISK_FRACTION_OF_EQUAL / len(signals.tasks)
    return tuple(sorted((t for t in signals.tasks if signals.contribution_share[t] < line),
                        key=lambda t: signals.contribution_share[t]))


def recommend(signals: Signals) -> Recommendation:
    """The rule: norms marked → loss scaling; only conflicts marked → a conflict-aware method; both → loss scaling
    (the paper's finding), neither → uniform. The triggers hold the numbers compared with the thresholds."""
    pairs = conflicting_pairs(signals)
    ratio = (f"‖g_{signals.largest}‖/‖g_{signals.smallest}‖ = {signals.norm_ratio:.3g} (median over "
             f"{signals.records} logged steps; marked from {NORM_RATIO_MARKED:g})")
    triggers: dict[str, float | str] = {"norm_ratio": signals.norm_ratio, "norm_ratio_marked": NORM_RATIO_MARKED,
                                        "largest": signals.largest, "smallest": signals.smallest,
                                        "conflicting_pairs": len(pairs)}
    if pairs:
        worst = pairs[0]
        low = conflict_bound(worst, len(signals.pairs))
        triggers.update({"worst_pair": worst.key, "worst_pair_mean_cos": worst.mean_cos,
                         "worst_pair_negative_fraction": worst.negative.value or 0.0, "worst_pair_negative_low": low})
        conflict = (f"{len(pairs)} conflicting pair(s), worst {worst.a}/{worst.b}: mean cos {worst.mean_cos:.3f}, "
                    f"negative on {worst.negative.k}/{worst.negative.n} steps (Wilson low {low:.2f} > "
                    f"{CONFLICT_STEP_FRACTION:g}, family-wise 95% over {len(signals.pairs)} pairs)")
    else:
        conflict = (f"no conflicting pair (none has mean cos < {CONFLICT_COS:g} on more than "
                    f"{CONFLICT_STEP_FRACTION:.0%} of the steps beyond chance)")
    if norms_marked(signals) and pairs:
        return Recommendation("norms and conflicts", BOTH[0], BOTH[1:],
                              f"norms dominate: {ratio}; conflicts too: {conflict}. The paper finds imbalance follows "
                              "the norms, not the angles (Sec. V-F), so rescale the losses first", triggers)
    if norms_marked(signals):
        return Recommendation("norm-dominated", LOSS_SCALING[0], LOSS_SCALING[1:],
                              f"norms dominate: {ratio}; {conflict}", triggers)
    if pairs:
        return Recommendation("conflict-dominated", CONFLICT_AWARE[0], CONFLICT_AWARE[1:],
                              f"conflicts dominate: {conflict}; norms are balanced: {ratio}", triggers)
    return Recommendation("balanced", NEITHER[0], (), f"neither is marked: {ratio}; {conflict}", triggers)


def diagnose(signals: Signals) -> Diagnosis:
    """Signals → tasks at risk and the recommendation."""
    return Diagnosis(signals, tasks_at_risk(signals), recommend(signals))


def method_descriptions(methods: tuple[str, ...]) -> dict[str, str]:
    """The balancer registry's one-line description of each method named (the check that each is registered).

    Raises:
        DoctorError: a method is not a registered balancer.
    """
    from taskbalance.balancers.registry import available  # on use: imports every method module

    registered = available()
    missing = [m for m in methods if m not in registered]
    if missing:
        raise DoctorError(f"the doctor's rule names unregistered balancer(s) {', '.join(missing)}")
    return {m: registered[m] for m in methods}
