"""Algorithm 1 against cases solvable by hand and against independent computations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lrt
from lrt.experiments import ch03_algorithm1 as ch03


def orthogonal_problem(y_coef: torch.Tensor, seed: int) -> lrt.DiagonalLinearRegression:
    """X = √N·Q with Q orthogonal, so F(w) = ½‖w − y_coef‖² + const with const = 0."""
    n = y_coef.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    X = math.sqrt(n) * q
    return lrt.DiagonalLinearRegression(X, X @ y_coef)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), data=st.lists(st.floats(0.3, 5.0), min_size=2, max_size=5, unique=True), signs=st.integers(0, 31))
def test_orthogonal_design_stage_times_are_one_over_the_coefficients(seed, data, signs):
    # F = ½‖w − c‖²: coordinates are decoupled, g_i(0) = −c_i, so coordinate i activates at τ = 1/|c_i| and
    # its fast phase lands exactly on c_i; the plateau loss drops by ½c_i² each stage.
    c = torch.tensor([x * (-1) ** ((signs >> i) & 1) for i, x in enumerate(data)], dtype=torch.float64)
    stairs = lrt.algorithm1(orthogonal_problem(c, seed))
    order = torch.argsort(c.abs(), descending=True)
    torch.testing.assert_close(stairs.tau, 1 / c.abs()[order], rtol=1e-9, atol=0)
    assert stairs.activated.tolist() == order.tolist()
    expected_loss = 0.5 * torch.cat([(c**2).sum()[None], (c**2).sum() - torch.cumsum(c[order] ** 2, 0)])
    torch.testing.assert_close(stairs.loss, expected_loss, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(stairs.w[-1], c, rtol=1e-8, atol=1e-10)
    assert stairs.converged


def test_staircase_lookup_is_right_continuous():
    stairs = lrt.algorithm1(orthogonal_problem(torch.tensor([2.0, 1.0], dtype=torch.float64), 0))
    assert stairs.loss_at(torch.tensor([0.0, 0.49, 0.51, 0.99, 1.01, 9.0])).tolist() == pytest.approx([2.5, 2.5, 0.5, 0.5, 0.0, 0.0], abs=1e-12)
    assert stairs.w_at(torch.tensor([0.6])).shape == (1, 2)


def test_underdetermined_regression_ends_at_the_minimum_l1_interpolator():
    # Independent check (linear programming): the α → 0 limit of diagonal linear networks selects the
    # minimum-ℓ1 interpolator (Woodworth et al. 2020; Pesme & Flammarion 2023): a dense teacher (8 stages,
    # with coordinates switched off and on again) and the book's sparse one.
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(6, 12, generator=gen, dtype=torch.float64)
    dense = lrt.DiagonalLinearRegression(X, X @ torch.randn(12, generator=gen, dtype=torch.float64))
    for problem in (dense, ch03.sparse_regression()):
        stairs = lrt.algorithm1(problem)
        assert stairs.converged and stairs.loss[-1] < 1e-12 * stairs.loss[0]
        torch.testing.assert_close(stairs.w[-1], ch03.min_l1_interpolator(problem), rtol=0, atol=1e-7)


def test_fast_phase_end_point_does_not_depend_on_eps():
    problem = ch03.sparse_regression()
    a, b = lrt.algorithm1(problem, eps=1e-6), lrt.algorithm1(problem, eps=1e-11, zero_level=1e-13)
    torch.testing.assert_close(a.w, b.w, rtol=0, atol=1e-8)
    torch.testing.assert_close(a.tau, b.tau, rtol=1e-9, atol=0)


def test_log_engine_converges_to_the_staircase_on_sparse_regression():
    problem, stairs = ch03.sparse_regression(), ch03.linear_staircase()
    ubar, vbar = lrt.small_init(problem.dim, 1.0, generator=0)
    distances = []
    for exponent in (8, 32, 128):
        la = -exponent * math.log(10)
        path = lrt.log_variable_flow(problem, ubar, vbar, log_alpha=la, t_end=1.6 * -la, n_eval=2001)
        distances.append(lrt.staircase_distance(lrt.rescaled_time(path.t, la), path.loss, stairs))
    assert distances[0] > 1.8 * distances[1] > 3.2 * distances[2]  # ≈ halves per doubling of log(1/α)


def test_crossing_times_and_first_stage_time():
    t = torch.linspace(0, 4, 401, dtype=torch.float64)
    loss = torch.exp(-t)
    times = lrt.crossing_times(t, loss, torch.tensor([math.exp(-1.0), math.exp(-2.5), 1e-9]))
    assert times[:2].tolist() == pytest.approx([1.0, 2.5], abs=1e-4) and math.isnan(times[2])
    w = torch.stack([0.1 * torch.exp(t), -0.2 * torch.exp(t)], dim=1)
    assert lrt.first_stage_time(t, w, 1.0) == pytest.approx(math.log(5.0), abs=1e-3)
    with pytest.raises(lrt.LrtError, match="no |w_i| reaches level 1e\\+06"):
        lrt.first_stage_time(t, w, 1e6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps=0.0), "eps: expected a number > 0"),
        (dict(eps=float("nan")), "eps: expected a finite number"),
        (dict(eps=1e-8, zero_level=1e-6), "zero_level: expected a number below eps"),
        (dict(max_stages=0), "max_stages: expected an int >= 1"),
    ],
)
def test_algorithm1_rejects_bad_arguments(kwargs, message):
    with pytest.raises(lrt.LrtError, match=message):
        lrt.algorithm1(ch03.sparse_regression(), **kwargs)


def test_engines_reject_bad_inputs():
    with pytest.raises(lrt.LrtTypeError, match="problem: expected a DiagonalProblem"):
        lrt.algorithm1("not a problem")
    with pytest.raises(lrt.LrtError, match="log_alpha: expected a finite number < 0"):
        lrt.rescaled_time(torch.ones(2), 0.5)
    with pytest.raises(lrt.LrtError, match="log_alpha: expected a finite real number"):
        lrt.log_variable_flow(ch03.sparse_regression(), torch.ones(12), torch.ones(12), log_alpha=float("nan"), t_end=1.0)
    with pytest.raises(lrt.LrtTypeError, match="stairs: expected a Staircase"):
        lrt.staircase_distance(torch.zeros(2), torch.zeros(2), None)


class ExplodingProblem(lrt.DiagonalProblem):
    dim = 2

    def loss(self, w):
        return (w**2).sum()

    def loss_and_grad_numpy(self, w):
        return 0.0, np.array([np.nan, 1.0])


def test_non_finite_gradients_are_reported_by_every_engine():
    problem, ones = ExplodingProblem(), torch.ones(2)
    for call in [
        lambda: lrt.algorithm1(problem),
        lambda: lrt.log_variable_flow(problem, ones, ones, log_alpha=-5.0, t_end=1.0),
        lambda: lrt.gradient_flow(problem, ones, ones, t_end=1.0),
        lambda: lrt.gradient_descent(problem, ones, ones, lr=0.1, steps=3),
    ]:
        with pytest.raises(lrt.LrtError, match="non-finite gradient"):
            call()


def test_staircase_benchmark_quick_reports_ratios_and_accuracy():
    result = ch03.staircase_benchmark(quick=True)
    assert set(result["ratios"]) == {"uv_over_log", "gd_closed_form_over_log"}
    assert all(result["within_1_percent"].values()), result["max_stage_time_error"]
