"""Which methods a toy run drives, and with which options: ``name`` or ``name(key=value, ...)`` specs.

A spec's options go to the balancer (``taskbalance.balancers.create``). ``max_norm`` is the exception for methods
that have no such option: the official toy trainers clip the update of x with ``clip_grad_norm_`` for some methods
(CAGrad in the FAMO repo), so the runner applies it to each start's direction before Adam sees it. Methods that
clip themselves (Nash-MTL, FairGrad) keep ``max_norm`` as their own option.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the presets (and `taskbalance toy --help`) need the specs, not torch
    from taskbalance.toy.problem import ToyProblem

#: Option handled by the toy runner (gradient clipping of x) for methods that do not define it.
RUNNER_OPTION = "max_norm"


@dataclass(frozen=True)
class MethodSpec:
    """One method of a toy run: the balancer name, its options, and the runner's clipping norm."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    max_norm: float | None = None

    @property
    def label(self) -> str:
        """``name(key=value, ...)``: what tables and legends show; parses back to the same spec."""
        items = dict(self.options)
        if self.max_norm is not None:
            items[RUNNER_OPTION] = self.max_norm
        if not items:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in items.items())})"

    def with_defaults(self, defaults: MethodSpec | None) -> MethodSpec:
        """This spec with the options and clipping of ``defaults`` (the same method) where it sets none itself."""
        if defaults is None:
            return self
        max_norm = self.max_norm if self.max_norm is not None else defaults.max_norm
        return MethodSpec(self.name, dict(defaults.options) | dict(self.options), max_norm)


def parse_method(text: str) -> MethodSpec:
    """Parse ``name`` or ``name(key=value, ...)`` (values are Python literals: numbers, tuples, strings, booleans).

    The name must be a registered balancer (the error lists the valid ones).
    """
    from taskbalance.balancers import BalancerError, get

    text = text.strip()
    name, _, rest = text.partition("(")
    name = name.strip()
    cls = get(name)  # raises BalancerError listing the available methods
    options: dict[str, Any] = {}
    if rest:
        if not rest.endswith(")"):
            raise BalancerError(f"method spec {text!r}: missing closing parenthesis")
        bad = BalancerError(f"method spec {text!r}: options must be key=value literals, e.g. cagrad(c=0.5)")
        try:
            call = ast.parse(f"f({rest}", mode="eval").body
            if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
                raise bad
            options = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError):
            raise bad from None
    max_norm = None if RUNNER_OPTION in cls.Options.model_fields else options.pop(RUNNER_OPTION, None)
    return MethodSpec(cls.name, options, None if max_norm is None else float(max_norm))


def parse_methods(text: str) -> list[MethodSpec]:
    """Parse a comma-separated list of specs (commas inside parentheses belong to the options)."""
    from taskbalance.balancers import BalancerError

    specs, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            if text[start:i].strip():
                specs.append(parse_method(text[start:i]))
            start = i + 1
    if not specs:
        raise BalancerError("no methods given")
    return specs


def problem_defaults(method: str, problem: ToyProblem) -> dict[str, Any]:
    """Options a method needs on this problem whatever the preset: FAMO's ``min_losses`` (FAMO takes log(ℓ_i - b_i)
    and the toy losses are negative; the official toy sets ``b = (-21 s1, -21 s2)``)."""
    from taskbalance.toy.problem import TASKS

    if method == "famo":
        return {"min_losses": dict(zip(TASKS, problem.loss_lower_bounds()))}
    return {}
