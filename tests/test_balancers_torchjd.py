"""Cross-checks of the Gramian-based methods against TorchJD's independent aggregators, on random Jacobians.

Every intentional difference is undone before comparing (see each test):

* scale: TorchJD's CAGrad, AlignedMTL, FairGrad and the preference-vector methods live on the mean scale (or give
  the raw solution); our CAGrad/IMGrad/FairGrad multiply by K like their official code, Aligned-MTL sums (official);
* CAGrad: TorchJD has no ``(1 + c²)`` rescale (ours: ``rescale=0`` to compare) and solves with cvxpy/Clarabel where we
  use SLSQP, so weights agree to the solvers' accuracy;
* MGDA: TorchJD runs Frank–Wolfe, we run the official projected-gradient solver; both are run to convergence;
* FairGrad: TorchJD has no clipping (ours: ``max_norm=0``) and solves on the raw Gramian;
* IMTL-G: TorchJD normalises by ``Σ v``, we by ``|Σ v|`` (equal when ``Σ v > 0``; otherwise the signs differ);
* Nash-MTL: TorchJD's needs ECOS (not installed here), so that check is skipped unless ``ecos`` is importable;
  TorchJD's FairGrad with α = 1 solves the same equation and is always compared.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

torchjd_aggregation = pytest.importorskip("torchjd.aggregation")

from taskbalance.balancers import create  # noqa: E402
from taskbalance.balancers.upgrad import dual_cone_weights  # noqa: E402

SEEDS = range(4)


def random_gramian(seed: int, k: int = 4, dim: int = 7) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    jacobian = torch.randn(k, dim, generator=generator, dtype=torch.float64)
    jacobian *= torch.logspace(-0.5, 0.5, k, dtype=torch.float64).unsqueeze(1)
    return jacobian, jacobian @ jacobian.T


def ours(name: str, jacobian: Tensor, **options: object) -> Tensor:
    balancer = create(name, tasks=[f"t{i}" for i in range(jacobian.shape[0])], **options)
    return balancer.combine(jacobian)[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_upgrad_matches_torchjd(seed: int) -> None:
    pytest.importorskip("qpsolvers")  # TorchJD's QuadprogProjector goes through qpsolvers
    jacobian, gramian = random_gramian(seed)
    reference = torchjd_aggregation.UPGradWeighting()(gramian)  # pref 1/K, norm_eps = reg_eps = 1e-4: our defaults
    assert torch.allclose(ours("upgrad", jacobian), reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_dual_cone_projection_of_the_mean_matches_torchjd_dualproj(seed: int) -> None:
    pytest.importorskip("qpsolvers")
    _, gramian = random_gramian(seed)
    k = gramian.shape[0]
    regularized = gramian / gramian.trace() + 1e-4 * torch.eye(k, dtype=torch.float64)
    reference = torchjd_aggregation.DualProjWeighting()(gramian)
    mean_preference = torch.full((k,), 1.0 / k, dtype=torch.float64)
    assert torch.allclose(dual_cone_weights(regularized, mean_preference), reference, atol=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
def test_mgda_matches_torchjd(seed: int) -> None:
    jacobian, gramian = random_gramian(seed)
    reference = torchjd_aggregation.MGDAWeighting(epsilon=1e-12, max_iters=2000)(gramian)
    mine = ours("mgda", jacobian, tol=1e-13, max_iter=5000)  # scale=False: Σα = 1 like TorchJD
    # Frank–Wolfe converges like 1/t: after 2000 iterations its min-norm point is within ~2e-4 ‖J‖ of ours, and
    # ours (the converged projected-gradient solver) is never the worse one
    assert float((mine @ jacobian - reference @ jacobian).norm()) < 1e-3 * float(jacobian.norm())
    assert float(mine @ gramian @ mine) <= float(reference @ gramian @ reference) * (1 + 1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [0.2, 0.4, 0.8])
def test_cagrad_matches_torchjd(seed: int, c: float) -> None:
    jacobian, gramian = random_gramian(seed)
    k = gramian.shape[0]
    reference = torchjd_aggregation.CAGradWeighting(c=c)(gramian)  # 1/K + λ w*, no rescale, no ×K
    mine = ours("cagrad", jacobian, c=c, rescale=0) / k
    # Clarabel's default accuracy leaves up to ~1e-4 relative differences at c = 0.8 (ours is the closer one to the
    # primal optimum, see test_cagrad_solves_the_primal)
    d, d_ref = mine @ jacobian, reference @ jacobian
    assert float((d - d_ref).norm()) <= 2e-4 * float(d_ref.norm())


@pytest.mark.parametrize("seed", SEEDS)
def test_imtl_g_matches_torchjd(seed: int) -> None:
    jacobian, gramian = random_gramian(seed)
    reference = torchjd_aggregation.IMTLGWeighting()(gramian)
    mine = ours("imtl", jacobian)
    sign = 1.0 if float(mine.sum()) > 0 else -1.0  # our |Σ v| normalisation (see the module docstring)
    assert torch.allclose(mine, sign * reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_mtl_matches_torchjd(seed: int, scale_mode: str) -> None:
    jacobian, gramian = random_gramian(seed)
    k = gramian.shape[0]
    reference = torchjd_aggregation.AlignedMTLWeighting(scale_mode=scale_mode)(gramian)  # mean preference vector
    assert torch.allclose(ours("aligned_mtl", jacobian, scale_mode=scale_mode), k * reference, rtol=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_fairgrad_matches_torchjd(seed: int, alpha: float) -> None:
    jacobian, gramian = random_gramian(seed)
    k = gramian.shape[0]
    reference = torchjd_aggregation.FairGradWeighting(alpha=alpha)(gramian)  # raw w: no ×K, no clipping
    assert torch.allclose(ours("fairgrad", jacobian, alpha=alpha, max_norm=0.0) / k, reference, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_nashmtl_matches_torchjd_fairgrad_alpha_one(seed: int) -> None:
    # α = 1 fairness is the Nash bargaining equation (G w)_i = 1/w_i, solved by TorchJD with least squares. (Seed 3
    # is a case where the official CCP fails from its start α = 1: (Gα)_1 < 0 makes the first sub-problem unbounded;
    # the Newton solver is not affected, see test_nashmtl_solves_where_the_official_first_subproblem_is_unbounded.)
    jacobian, gramian = random_gramian(seed)
    reference = torchjd_aggregation.FairGradWeighting(alpha=1.0)(gramian)
    assert torch.allclose(ours("nashmtl", jacobian, max_norm=0.0), reference, rtol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
def test_nashmtl_matches_torchjd(seed: int) -> None:
    pytest.importorskip("ecos")  # TorchJD's NashMTL hard-requires ECOS
    jacobian, _ = random_gramian(seed)
    reference = torchjd_aggregation.NashMTL(n_tasks=jacobian.shape[0], max_norm=0.0)(jacobian.float()).double()
    # both solve α_i (Gα)_i = 1 (TorchJD mixes normalised and raw Gramians along the way), so the directions agree
    mine = ours("nashmtl", jacobian, max_norm=0.0) @ jacobian
    assert torch.allclose(mine, reference, rtol=1e-2, atol=1e-3 * float(reference.norm()))
