"""The toy benchmark: objectives by hand, the exact Pareto set, the runner against a hand-rolled Adam loop, the
distances, the method specs and presets, and the CLI end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from taskbalance.balancers import BalancerError, available, create
from taskbalance.cli.main import app
from taskbalance.toy.methods import MethodSpec, parse_method, parse_methods
from taskbalance.toy.plot import trajectories_figure
from taskbalance.toy.presets import (
    PRESETS,
    SCALINGS,
    parse_scaling,
    parse_starts,
    resolve_settings,
)
from taskbalance.toy.problem import (
    PAPER_PARETO_X2,
    TASKS,
    ToyProblem,
    pareto_set,
    pareto_x2,
)
from taskbalance.toy.report import MOVING_WINDOW, distance_to_polyline, reached_counts, summarize
from taskbalance.toy.runner import ToyRun, run_toy


def hand_losses(x1: float, x2: float, s1: float = 1.0, s2: float = 1.0) -> tuple[float, float]:
    """The official toy formula, written out with the math module."""
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), 5e-6)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), 5e-6)) + 6
    q1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    q2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = max(math.tanh(0.5 * x2), 0)
    c2 = max(math.tanh(-0.5 * x2), 0)
    return s1 * (c1 * f1 + c2 * q1), s2 * (c1 * f2 + c2 * q2)


def min_norm_of_two(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """‖min-norm element of conv{g1, g2}‖ by the closed form (rows are points)."""
    diff = g1 - g2
    w = ((g2 - g1) * g2).sum(-1) / (diff * diff).sum(-1).clamp_min(1e-300)
    w = w.clamp(0, 1)[:, None]
    return (w * g1 + (1 - w) * g2).norm(dim=-1)


POINTS = [(1.0, 2.0), (-8.5, 7.5), (-3.0, -4.0), (9.0, -1.0), (2.5, -8.3)]


@pytest.mark.parametrize("scales", list(SCALINGS.values()))
def test_losses_match_the_formula(scales):
    problem = ToyProblem(scales)
    x = torch.tensor(POINTS, dtype=torch.float64)
    expected = torch.tensor([hand_losses(*p, *scales) for p in POINTS], dtype=torch.float64)
    torch.testing.assert_close(problem.losses(x), expected, rtol=1e-12, atol=1e-12)


def test_jacobians_are_per_start_gradients():
    problem = ToyProblem((0.1, 1.0))
    x = torch.tensor(POINTS, dtype=torch.float64)
    losses, jacobians = problem.losses_and_jacobians(x)
    for s, point in enumerate(POINTS):
        single = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        for i in range(2):
            (grad,) = torch.autograd.grad(problem.losses(single[None])[0, i], single)
            torch.testing.assert_close(jacobians[s, i], grad)
        # central differences of the hand formula
        for j in range(2):
            h = 1e-6
            up, down = list(point), list(point)
            up[j] += h
            down[j] -= h
            numeric = [(a - b) / (2 * h) for a, b in zip(hand_losses(*up, 0.1, 1.0), hand_losses(*down, 0.1, 1.0))]
            torch.testing.assert_close(
                jacobians[s, :, j], torch.tensor(numeric, dtype=torch.float64), rtol=1e-5, atol=1e-6
            )
    torch.testing.assert_close(losses, problem.losses(x))


def test_origin_has_a_gradient_as_in_the_papers():
    # tanh(±x2/2) = 0 at x2 = 0: with clamp's subgradient 1 (the papers' PyTorch) the origin is not stationary.
    _, jacobians = ToyProblem().losses_and_jacobians(torch.zeros(1, 2, dtype=torch.float64))
    f1, f2 = math.log(3.5) + 6, math.log(3.5) + 6  # |0.5·(-7)| and |0.5·3 + 2|
    q1 = q2 = (49 + 6.4) / 10 - 20
    torch.testing.assert_close(
        jacobians[0, :, 1], torch.tensor([0.5 * f1 - 0.5 * q1, 0.5 * f2 - 0.5 * q2], dtype=torch.float64)
    )


def test_exact_pareto_set_is_pareto_stationary():
    front = pareto_set(201)
    _, jacobians = ToyProblem().losses_and_jacobians(front)
    assert float(min_norm_of_two(jacobians[:, 0], jacobians[:, 1]).max()) < 1e-9
    # the papers' horizontal line is exact only at x1 = 0 and misses the arc at the ends
    assert abs(float(pareto_x2(torch.zeros(1))) - PAPER_PARETO_X2) < 1e-4
    line = torch.tensor([[-7.0, PAPER_PARETO_X2], [0.0, PAPER_PARETO_X2], [7.0, PAPER_PARETO_X2]], dtype=torch.float64)
    _, line_jacobians = ToyProblem().losses_and_jacobians(line)
    line_norms = min_norm_of_two(line_jacobians[:, 0], line_jacobians[:, 1])
    assert float(line_norms[1]) < 1e-4 < float(line_norms[0])
    # just outside the set (x1 beyond ±7, or off the arc) the two gradients no longer cancel
    outside = torch.tensor([[7.5, float(pareto_x2(torch.tensor([7.0])))], [0.0, -8.0]], dtype=torch.float64)
    _, outside_jacobians = ToyProblem().losses_and_jacobians(outside)
    assert float(min_norm_of_two(outside_jacobians[:, 0], outside_jacobians[:, 1]).min()) > 1e-3


@pytest.mark.parametrize("scales", list(SCALINGS.values()))
def test_optimum_minimises_the_summed_losses(scales):
    problem = ToyProblem(scales)
    optimum = problem.optimum()
    _, jacobians = problem.losses_and_jacobians(optimum[None])
    assert float(jacobians[0].sum(0).norm()) < 1e-9
    around = optimum + 0.05 * torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=torch.float64)
    assert bool((problem.losses(around).sum(1) > problem.losses(optimum[None]).sum()).all())


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_runner_with_uniform_is_adam_on_the_summed_gradient(max_norm):
    problem = ToyProblem((0.1, 1.0))
    starts = torch.tensor([[-8.5, 7.5], [0.0, 0.0], [9.0, -1.0]], dtype=torch.float64)
    steps = 40
    run = run_toy(problem, [MethodSpec("uniform", max_norm=max_norm)], starts, steps)
    lr, beta1, beta2, eps = 1e-3, 0.9, 0.999, 1e-8
    for s in range(starts.shape[0]):
        x = starts[s].clone()
        m = torch.zeros(2, dtype=torch.float64)
        v = torch.zeros(2, dtype=torch.float64)
        for t in range(1, steps + 1):
            point = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.losses(point[None]).sum(), point)
            if max_norm is not None:
                grad = grad * min(1.0, max_norm / (float(grad.norm()) + 1e-6))
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            x = x - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
            torch.testing.assert_close(run.points[t, 0, s], x, rtol=0, atol=1e-12)
    assert run.steps == steps and run.failures == {}
    torch.testing.assert_close(run.losses, problem.losses(run.points.reshape(-1, 2)).reshape(run.losses.shape))
    assert bool((run.weights == 1).all())


@pytest.mark.skipif("famo" not in available(), reason="FAMO not registered")
def test_runner_feeds_famo_the_losses_at_the_new_point():
    problem = ToyProblem((0.1, 1.0))
    start = torch.tensor([[-7.5, -0.5]], dtype=torch.float64)
    steps = 25
    run = run_toy(problem, [MethodSpec("famo", {"gamma": 0.0})], start, steps)
    balancer = create("famo", tasks=TASKS, gamma=0.0, min_losses={"loss1": -2.1, "loss2": -21.0})
    x = start[0].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=1e-3)
    for t in range(steps):
        losses = problem.losses(x[None])[0]
        if t > 0:
            balancer.post_step(losses.detach())
        jacobian = torch.stack([torch.autograd.grad(losses[i], x, retain_graph=True)[0] for i in range(2)])
        direction, weights = balancer.combine(jacobian, losses.detach())
        torch.testing.assert_close(run.weights[t, 0, 0], weights)
        x.grad = direction
        optimizer.step()
    torch.testing.assert_close(run.points[-1, 0, 0], x.detach(), rtol=0, atol=1e-12)


def test_distance_to_polyline_by_hand():
    curve = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    points = torch.tensor([[1.0, 1.0], [-3.0, 4.0], [3.0, 1.0], [2.0, 3.0], [1.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([1.0, 5.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(distance_to_polyline(points, curve), expected)


def test_summarize_measures_distances_to_the_exact_set_and_optimum():
    problem = ToyProblem((0.9, 0.1))
    optimum = problem.optimum()
    end, middle = pareto_set(3)[0], pareto_set(3)[1]  # (-7, x2*(-7)) and the arc's top (0, -8.3551)
    finals = torch.stack([optimum, end, middle + torch.tensor([0.0, 0.3], dtype=torch.float64)])
    starts = torch.zeros(3, 2, dtype=torch.float64)
    points = torch.stack([starts, finals])[:, None]  # 2×1×3×2: one step, one method
    run = ToyRun((MethodSpec("uniform"),), points, problem.losses(points.reshape(-1, 2)).reshape(points.shape),
                 torch.ones(1, 1, 3, 2), (0.0,), 0.0, {})
    outcomes = summarize(run, problem, tolerance=0.05)
    assert [o.on_pareto for o in outcomes] == [True, True, False]
    assert [o.at_optimum for o in outcomes] == [True, False, False]
    assert outcomes[2].pareto_distance == pytest.approx(0.3, abs=1e-6)
    assert outcomes[1].optimum_distance == pytest.approx(float((end - optimum).norm()))
    assert optimum[0] == pytest.approx(5.6)


def test_method_specs():
    specs = parse_methods("uniform, cagrad(c=0.5, rescale=2),famo(min_losses={'loss1': -2.1, 'loss2': -21})")
    assert [s.name for s in specs] == ["uniform", "cagrad", "famo"]
    assert dict(specs[1].options) == {"c": 0.5, "rescale": 2}
    assert specs[2].options["min_losses"] == {"loss1": -2.1, "loss2": -21}
    assert parse_method(specs[1].label) == specs[1]
    clipped = parse_method("uniform(max_norm=1)")  # uniform has no max_norm: the runner clips
    assert clipped.max_norm == 1.0 and clipped.options == {}
    with pytest.raises(BalancerError, match="available: .*uniform"):
        parse_methods("uniform,no_such_method")
    with pytest.raises(BalancerError, match="key=value"):
        parse_method("cagrad(0.5)")
    with pytest.raises(BalancerError, match="no methods"):
        parse_methods(" , ")


def test_presets_and_overrides():
    settings = resolve_settings("famo")
    assert settings.scales == (0.1, 1.0) and settings.steps == PRESETS["famo"].steps
    assert len(settings.starts) == 5
    custom = resolve_settings("famo", methods="famo(w_lr=0.01),uniform", steps=7, scaling="0.9,0.1", starts="1,2;3,4")
    famo = custom.methods[0]
    assert famo.options["w_lr"] == 0.01 and famo.options["gamma"] == 0.0  # the preset's gamma = 0 is kept
    assert custom.scales == (0.9, 0.1) and custom.steps == 7 and custom.starts == ((1.0, 2.0), (3.0, 4.0))
    assert parse_scaling("imgrad") == (0.9, 0.1)
    with pytest.raises(ValueError, match="available: cagrad"):
        resolve_settings("nope")
    with pytest.raises(ValueError, match="equal, nashmtl, imgrad"):
        parse_scaling("huge")
    with pytest.raises(ValueError, match="positive"):
        parse_scaling("1,-1")
    with pytest.raises(ValueError, match="x1,x2"):
        parse_starts("1,2,3")


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "toy"
    result = CliRunner().invoke(
        app, ["toy", "--preset", "famo", "--methods", "famo", "--steps", "15", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["steps"] == 15 and data["meta"]["loss_scales"] == [0.1, 1.0]
    assert data["meta"]["methods"][0]["balancer_options"] == {
        "min_losses": {"loss1": -2.1, "loss2": -21.0}, "gamma": 0.0, "w_lr": 0.025
    }
    assert len(data["outcomes"]) == 5
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 5
    assert "| famo(gamma=0.0, w_lr=0.025) | 0/5 | 0/5 |" in (out / "results.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json", "results.md", "trajectories.png"]


def test_cli_rejects_unknown_method_and_scaling(tmp_path):
    result = CliRunner().invoke(app, ["toy", "--methods", "nope", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "available" in result.output
    result = CliRunner().invoke(app, ["toy", "--scaling", "weird", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "equal" in result.output
    result = CliRunner().invoke(app, ["toy", "--methods", "cagrad(radius=1)", "--steps", "1", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "options of cagrad" in result.output
    assert not list(tmp_path.iterdir())


def hand_run(finals: torch.Tensor, before: torch.Tensor, problem: ToyProblem, steps: int) -> ToyRun:
    """A one-method run from the starts (s, 0), at ``before`` until the last ``MOVING_WINDOW`` steps, then at
    ``finals``."""
    points = before[None, None].repeat(steps + 1, 1, 1, 1)
    points[0, 0] = torch.zeros_like(before)
    points[0, 0, :, 0] = torch.arange(len(before))
    points[max(0, steps - MOVING_WINDOW) + 1 :, 0] = finals
    losses = problem.losses(points.reshape(-1, 2)).reshape(points.shape)
    return ToyRun((MethodSpec("uniform"),), points, losses, torch.ones(steps, 1, len(finals), 2), (0.0,), 0.0, {})


def test_still_moving_is_the_distance_travelled_over_the_last_steps():
    problem = ToyProblem((0.1, 1.0))
    finals = torch.tensor([[1.0, -2.0], [3.0, -4.0], [5.0, -6.0]], dtype=torch.float64)
    before = finals - torch.tensor([[0.3, 0.4], [0.006, 0.008], [0.0, 0.0]], dtype=torch.float64)  # moved 0.5, 0.01, 0
    outcomes = summarize(hand_run(finals, before, problem, steps=MOVING_WINDOW + 500), problem, moving_threshold=0.009)
    assert [o.recent_move for o in outcomes] == pytest.approx([0.5, 0.01, 0.0])
    assert [o.moving for o in outcomes] == [True, True, False]
    assert reached_counts(outcomes)["uniform"][2:] == (2, 3)
    # a run shorter than the window: measured from the start
    short = summarize(hand_run(finals, finals, problem, steps=10), problem)
    assert [o.recent_move for o in short] == pytest.approx([5**0.5, 20**0.5, 45**0.5])


def test_figure_marks_ends_and_lists_each_legend_entry_once():
    problem = ToyProblem((0.1, 1.0))
    finals = torch.tensor([[1.0, -2.0], [3.0, -4.0]], dtype=torch.float64)
    run = hand_run(
        finals, finals - torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=torch.float64), problem, MOVING_WINDOW + 5
    )
    outcomes = summarize(run, problem)
    figure = trajectories_figure(run, problem, outcomes)
    (legend,) = figure.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert len(labels) == len(set(labels)) and sum("Pareto" in label for label in labels) == 1
    assert min(text.get_fontsize() for text in legend.get_texts()) >= 10
    param_axes, loss_axes = figure.axes[0], figure.axes[1]
    assert loss_axes.get_box_aspect() == 1 and param_axes.get_aspect() == 1
    for axes, path in ((param_axes, run.points), (loss_axes, run.losses)):
        ends = [line for line in axes.get_lines() if line.get_marker() == "s"]
        assert [tuple(line.get_xydata()[0]) for line in ends] == [tuple(p) for p in path[-1, 0].tolist()]
        # the first start moved 0.5 in the last steps (hollow square), the second had stopped (filled)
        assert [line.get_markerfacecolor() for line in ends] == ["white", "C1"]
    with pytest.raises(ValueError, match="outcomes"):
        trajectories_figure(run, problem, outcomes[:1])


def test_famo_preset_clips_as_the_famo_repository():
    preset = PRESETS["famo"]
    clipped = {spec.name: spec.max_norm for spec in preset.methods}
    # PCGrad and CAGrad clip inside backward there (runner clipping); LS, MGDA, FAMO clip before backward: no effect
    assert clipped == {"uniform": None, "mgda": None, "pcgrad": 1.0, "cagrad": 1.0, "nashmtl": None, "famo": None}
    assert preset.method("nashmtl").options["max_norm"] == 1.0  # Nash-MTL clips itself
    assert {spec.name: spec.max_norm for spec in PRESETS["nashmtl"].methods}["pcgrad"] is None


def test_imgrad_preset_uses_the_aligned_mtl_generator_cagrad():
    assert PRESETS["imgrad"].method("cagrad").options == {"c": 0.5}
    assert PRESETS["imgrad"].steps == 35_000 and resolve_settings("imgrad").scales == (0.9, 0.1)


def test_presets_compute_in_float32_and_float64_is_an_option():
    assert resolve_settings("cagrad").dtype == "float32"
    assert resolve_settings("cagrad", dtype="float64").dtype == "float64"
    with pytest.raises(ValueError, match="float32, float64"):
        resolve_settings("cagrad", dtype="float16")
    problem = ToyProblem((0.1, 1.0))
    starts = torch.tensor([[-8.5, 7.5], [9.0, -1.0]], dtype=torch.float64)
    steps = 30
    single = run_toy(problem, [MethodSpec("uniform", max_norm=0.5)], starts, steps, dtype=torch.float32)
    double = run_toy(problem, [MethodSpec("uniform", max_norm=0.5)], starts, steps)
    # the float32 run is torch's own Adam on float32 x with the clipped summed gradient
    x = starts.float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=1e-3)
    clipped = 0
    for _ in range(steps):
        optimizer.zero_grad()
        problem.losses(x).sum().backward()
        for row in range(2):  # clip_grad_norm_ per start
            norm = float(x.grad[row].norm())
            clipped += norm > 0.5
            x.grad[row] *= min(1.0, 0.5 / (norm + 1e-6))
        optimizer.step()
    assert 0 < clipped < 2 * steps
    assert single.points.dtype == torch.float64
    torch.testing.assert_close(single.points[-1, 0], x.detach().double(), rtol=0, atol=1e-6)
    assert float((single.points[-1] - double.points[-1]).abs().max()) > 0  # float32 arithmetic really used
